import Foundation
@testable import SandboxCore
import Testing
@testable import SandboxOS
@testable import SandboxConfig

@Suite("plan computation")
struct PlanTests {
    /// A config whose shares live in a temp dir; the primary user is one that
    /// exists on any Debian host, the group one that does not.
    func config(_ dir: String) -> Config {
        var c = Config(primaryUser: "nobody")
        c.sharedGroup.name = "cs_test_nogroup"
        c.comfyui.path = dir + "/opt/ComfyUI"
        c.stateDir = dir + "/state"
        c.shares = [
            .init(name: "models", path: dir + "/data/models", mount: "models", access: .readOnly),
            .init(name: "output", path: dir + "/data/output", mount: "output", access: .readWrite),
        ]
        return c
    }

    func tempDir() throws -> String {
        var t = Array("/tmp/cs-plan-XXXXXX".utf8CString)
        return String(cString: try #require(mkdtemp(&t)))
    }

    @Test("a change prints as one line: area, action, target, from -> to")
    func lineFormat() {
        let c = Change(.tree, "set mode", "/x", from: "0755", to: "2775") {}
        #expect(c.line == "tree: set mode /x 0755 -> 2775")
        #expect(Change(.accounts, "create group", "g", to: "system group") {}.line == "accounts: create group g -> system group")
        #expect(Change(.tree, "remove default ACL", "/x", from: "read-only share") {}.line == "tree: remove default ACL /x (read-only share)")
    }

    @Test("missing shares are planned as created with mode, group and ACL, then linked into ComfyUI")
    func missingShares() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let lines = try TreePlanner().changes(for: config(dir), context: PlanContext(dryRun: true)).map(\.line)
        #expect(lines == [
            "tree: create ComfyUI user directory \(dir)/opt/ComfyUI/user -> comfyui_sandbox:cs_test_nogroup 2770",
            "tree: create ComfyUI user directory \(dir)/opt/ComfyUI/user/default -> comfyui_sandbox:cs_test_nogroup 2770",
            "tree: create ComfyUI web/extensions (nodes add their folder there) \(dir)/opt/ComfyUI/web/extensions -> comfyui_sandbox:cs_test_nogroup 2770",
            "tree: create directory \(dir)/data/models -> nobody:cs_test_nogroup 2755",
            "tree: link \(dir)/opt/ComfyUI/models -> \(dir)/data/models",
            "tree: create directory \(dir)/data/output -> nobody:cs_test_nogroup 2775 + default ACL u::rwx,g::rwx,g:cs_test_nogroup:rwx,m::rwx,o::r-x",
            "tree: link \(dir)/opt/ComfyUI/output -> \(dir)/data/output",
        ])
        #expect(!FileManager.default.fileExists(atPath: dir + "/data"), "planning created something")
    }

    @Test("an existing share with drift is planned field by field; a right link is not planned")
    func drift() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/data/output", withIntermediateDirectories: true)
        chmod(dir + "/data/output", 0o755)
        try FileManager.default.createDirectory(atPath: dir + "/opt/ComfyUI", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: dir + "/opt/ComfyUI/output", withDestinationPath: dir + "/data/output")
        var c = config(dir)
        c.shares.removeFirst()
        let lines = try TreePlanner().changes(for: c, context: PlanContext(dryRun: true)).map(\.line)
        #expect(lines.contains("tree: set mode \(dir)/data/output 0755 -> 2775"), "\(lines)")
        #expect(lines.contains { $0.hasPrefix("tree: set group \(dir)/data/output") && $0.hasSuffix("-> cs_test_nogroup") })
        #expect(lines.contains { $0.hasPrefix("tree: set default ACL \(dir)/data/output") })
        #expect(!lines.contains { $0.contains("link") }, "\(lines)")
    }

    @Test("a file where a share or a view must be is an error naming the key; a symlinked ancestor too")
    func neverClobber() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/data", withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: dir + "/data/models", contents: Data("x".utf8))
        #expect(throws: SandboxError.self) { try TreePlanner().changes(for: config(dir), context: PlanContext(dryRun: true)) }
        do { _ = try TreePlanner().changes(for: config(dir), context: PlanContext(dryRun: true)) } catch let e as SandboxError {
            #expect(e.message.contains("shares[0].path") && e.message.contains("a regular file"), "\(e.message)")
        }
        try FileManager.default.removeItem(atPath: dir + "/data")
        try FileManager.default.createSymbolicLink(atPath: dir + "/data", withDestinationPath: "/etc")
        do { _ = try TreePlanner().changes(for: config(dir), context: PlanContext(dryRun: true)); Issue.record("no error") } catch let e as SandboxError {
            #expect(e.message.contains("symbolic link"), "\(e.message)")
        }
        // A non-empty directory where the view link goes.
        try FileManager.default.removeItem(atPath: dir + "/data")
        try FileManager.default.createDirectory(atPath: dir + "/opt/ComfyUI/models/x", withIntermediateDirectories: true)
        do { _ = try TreePlanner().changes(for: config(dir), context: PlanContext(dryRun: true)); Issue.record("no error") } catch let e as SandboxError {
            #expect(e.message.contains("shares[0].mount"), "\(e.message)")
        }
    }

    @Test("--only takes comma lists and rejects unknown areas")
    func only() throws {
        #expect(try Provisioner.parseAreas(["accounts,tree"]) == [.accounts, .tree])
        #expect(try Provisioner.parseAreas(["tree", "models"]) == [.tree, .models])
        #expect(try Provisioner.parseAreas([]) == nil)
        #expect(throws: SandboxError.self) { try Provisioner.parseAreas(["trees"]) }
        let p = Provisioner(config: Config(primaryUser: "nobody"), only: [.tree])
        #expect(p.planners.map(\.area) == [.tree])
        #expect(Provisioner(config: Config(primaryUser: "nobody")).planners.map(\.area) == Planners.all().map(\.area).sorted())
    }

    @Test("paths in reports escape newlines, backslashes and bytes that are not UTF-8")
    func escape() {
        #expect(Format.escape(Array("a\nb".utf8)) == "a\\nb")
        #expect(Format.escape([0x61, 0xff, 0x62]) == "a\\xffb")
        #expect(Format.escape(Array("ü\\".utf8)) == "ü\\\\")
        #expect(Format.escape(Array("-rf".utf8)) == "-rf")
    }

    @Test("file modes: 0644/0664, executables keep x, setuid/setgid/sticky cleared")
    func fileModes() {
        let ro = PermissionFixer(share: .init(name: "m", path: "/x", mount: "m", access: .readOnly), gid: 1)
        let rw = PermissionFixer(share: .init(name: "o", path: "/x", mount: "o", access: .readWrite), gid: 1)
        #expect(ro.fileMode(0o600) == 0o644)
        #expect(rw.fileMode(0o600) == 0o664)
        #expect(rw.fileMode(0o6755) == 0o775)
        #expect(ro.fileMode(0o1777) == 0o755)
    }
}
