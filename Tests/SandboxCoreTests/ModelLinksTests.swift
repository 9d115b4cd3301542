import Foundation
@testable import SandboxCore
import Testing
@testable import SandboxOS
@testable import SandboxConfig

@Suite("models links from a Hugging Face cache")
struct ModelLinksTests {
    let cache: FakeHFCache
    let share: ModelsTempDir
    let c1 = "1111111111111111111111111111111111111111"
    let c2 = "2222222222222222222222222222222222222222"

    init() throws {
        cache = try FakeHFCache()
        share = try ModelsTempDir("share")
        try cache.add(repo: "Comfy-Org/flux", commit: c1, file: "split_files/vae/ae.safetensors", content: "vae at c1")
        try cache.add(repo: "Comfy-Org/flux", commit: c2, file: "split_files/vae/ae.safetensors", content: "vae at c2")
        try cache.add(repo: "Comfy-Org/flux", commit: c2, file: "model.gguf", content: "gguf at c2")
        try cache.setRef(repo: "Comfy-Org/flux", "main", commit: c2 + "\n")
        try cache.setRef(repo: "Comfy-Org/flux", "v1", commit: c1)
    }

    func config(_ links: [Config.ModelLink], cacheRoot: String? = nil, sharePath: String? = nil) -> Config {
        var c = Config(primaryUser: "nobody")
        c.sharedGroup.name = "nogroup"
        c.shares = [Config.Share(name: "models", path: sharePath ?? share.path, mount: "models", access: .readOnly)]
        c.models.hfCache = cacheRoot ?? cache.root
        c.models.links = links
        return c
    }

    func plan(_ c: Config) throws -> [Change] {
        try ModelLinksPlanner().changes(for: c, context: PlanContext(dryRun: true))
    }

    func planError(_ c: Config) -> String {
        do { _ = try plan(c); return "" } catch let e as SandboxError { return e.description } catch { return "\(error)" }
    }

    @Test("a nested remote path is flattened into dir/base name; plan shows from -> to")
    func nestedFlattened() throws {
        let changes = try plan(config([Config.ModelLink(repo: "Comfy-Org/flux", file: "split_files/vae/ae.safetensors", dir: "vae")]))
        try #require(changes.count == 1)
        #expect(changes[0].area == .models)
        #expect(changes[0].action == "hard-link")
        #expect(changes[0].line == "models: hard-link \(cache.root)/models--Comfy-Org--flux/snapshots/\(c2)/split_files/vae/ae.safetensors -> \(share.path)/vae/ae.safetensors")
    }

    @Test("rename is honoured, into a nested target dir")
    func renameHonoured() throws {
        let changes = try plan(config([Config.ModelLink(repo: "Comfy-Org/flux", file: "model.gguf", dir: "unet/flux", rename: "flux-q8.gguf")]))
        #expect(changes.map(\.to) == ["\(share.path)/unet/flux/flux-q8.gguf"])
    }

    @Test("revision pins a commit (snapshot name) or a ref under refs/; default is refs/main", .modelsNeedRoot)
    func revisionPinning() throws {
        let links = [
            Config.ModelLink(repo: "Comfy-Org/flux", file: "split_files/vae/ae.safetensors", dir: "main"),
            Config.ModelLink(repo: "Comfy-Org/flux", file: "split_files/vae/ae.safetensors", dir: "commit", revision: c1),
            Config.ModelLink(repo: "Comfy-Org/flux", file: "split_files/vae/ae.safetensors", dir: "ref", revision: "v1"),
        ]
        for change in try plan(config(links)) { try change.apply() }
        #expect(share.read("main/ae.safetensors") == "vae at c2")
        #expect(share.read("commit/ae.safetensors") == "vae at c1")
        #expect(share.read("ref/ae.safetensors") == "vae at c1")
    }

    @Test("a missing repo, revision or file is an error naming the entry")
    func missingNamed() throws {
        let ok = Config.ModelLink(repo: "Comfy-Org/flux", file: "model.gguf", dir: "unet")
        let e1 = planError(config([ok, Config.ModelLink(repo: "Comfy-Org/flux", file: "split_files/nope.safetensors", dir: "vae")]))
        #expect(e1.contains("models.links[1]: split_files/nope.safetensors is not in Comfy-Org/flux at revision \(c2)"))
        let e2 = planError(config([ok, ok, Config.ModelLink(repo: "nobody/here", file: "x", dir: "vae")]))
        #expect(e2.contains("models.links[2]: repo nobody/here is not in the Hugging Face cache"))
        let e3 = planError(config([Config.ModelLink(repo: "Comfy-Org/flux", file: "model.gguf", dir: "vae", revision: "v9")]))
        #expect(e3.contains("models.links[0].revision: Comfy-Org/flux in the cache has no snapshot or ref named v9"))
        #expect(e3.contains("refs/v1"))
    }

    @Test("hard links are the cache blob itself (same inode), made as the share owner's dirs 2755; a second plan is empty", .modelsNeedRoot)
    func hardLinkAndIdempotent() throws {
        let c = config([Config.ModelLink(repo: "Comfy-Org/flux", file: "split_files/vae/ae.safetensors", dir: "vae/sub")])
        for change in try plan(c) { try change.apply() }
        let target = try #require(modelsLstat(share.sub("vae/sub/ae.safetensors")))
        let blob = try #require(modelsStat(following: cache.root + "/models--Comfy-Org--flux/snapshots/\(c2)/split_files/vae/ae.safetensors"))
        #expect(target.st_ino == blob.st_ino && target.st_dev == blob.st_dev)
        #expect(target.st_mode & 0o7777 == 0o644)
        let dir = try #require(modelsLstat(share.sub("vae/sub")))
        #expect(dir.st_mode & 0o7777 == 0o2755)
        #expect(dir.st_uid == AccountLookup.user("nobody")?.uid)
        #expect(dir.st_gid == AccountLookup.group("nogroup")?.gid)
        #expect(try plan(c).isEmpty)
    }

    @Test("an existing different file at the target is never overwritten", .modelsNeedRoot)
    func existingLeftAlone() throws {
        try share.write("vae/ae.safetensors", "my own vae")
        let c = config([Config.ModelLink(repo: "Comfy-Org/flux", file: "split_files/vae/ae.safetensors", dir: "vae"),
                        Config.ModelLink(repo: "Comfy-Org/flux", file: "model.gguf", dir: "unet")])
        let changes = try plan(c)
        #expect(changes.map(\.action) == ["hard-link", "refuse to replace"])
        #expect(changes.last?.line.contains("\(share.path)/vae/ae.safetensors (a different file)") == true)
        #expect(throws: SandboxError.self) { for change in changes { try change.apply() } }
        #expect(share.read("vae/ae.safetensors") == "my own vae")
        #expect(share.read("unet/model.gguf") == "gguf at c2")
    }

    @Test("a snapshot entry leading out of the repo (to /etc/passwd) is refused")
    func escapeRefused() throws {
        try cache.dir.symlink("models--Comfy-Org--flux/snapshots/\(c2)/evil.safetensors", to: "/etc/passwd")
        try cache.dir.symlink("models--Comfy-Org--flux/snapshots/\(c2)/evil2.safetensors", to: "../../../../../../../../etc/passwd")
        for f in ["evil.safetensors", "evil2.safetensors"] {
            let e = planError(config([Config.ModelLink(repo: "Comfy-Org/flux", file: f, dir: "vae")]))
            #expect(e.contains("models.links[0]: ") && e.contains("leads outside"), "\(e)")
        }
    }

    @Test("a cache on another file system gets a symlink and group ACLs to traverse and read", .modelsNeedRoot)
    func symlinkAcrossFileSystems() throws {
        let shm = try FakeHFCache(base: "/dev/shm")
        try shm.add(repo: "a/b", commit: c1, file: "f.safetensors", content: "on tmpfs")
        try shm.setRef(repo: "a/b", "main", commit: c1)
        let c = config([Config.ModelLink(repo: "a/b", file: "f.safetensors", dir: "x")], cacheRoot: shm.root)
        let changes = try plan(c)
        #expect(changes.map(\.action) == ["symlink"])
        for change in changes { try change.apply() }
        let link = try #require(modelsLstat(share.sub("x/f.safetensors")))
        #expect(link.st_mode & S_IFMT == S_IFLNK)
        #expect(share.read("x/f.safetensors") == "on tmpfs")
        let acl = try HostCommand("/usr/bin/getfacl", ["-n", "-p", shm.root]).run().stdoutText
        #expect(acl.contains("group:\(AccountLookup.group("nogroup")!.gid):r-x"), "\(acl)")
        #expect(try plan(c).isEmpty)
    }
}

func modelsStat(following path: String) -> stat? {
    var st = stat()
    return stat(path, &st) == 0 ? st : nil
}
