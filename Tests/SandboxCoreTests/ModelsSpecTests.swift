import Foundation
@testable import SandboxCore
import Testing
@testable import SandboxOS
@testable import SandboxConfig

@Suite("MODELS string")
struct ModelsSpecTests {
    @Test("entries parse with and without LocalRename")
    func withAndWithoutRename() throws {
        let links = try ModelsSpec.parse("Comfy-Org/flux1-dev:split_files/vae/ae.safetensors:vae,city96/FLUX.1-dev-gguf:flux1-dev-Q8_0.gguf:unet:flux-q8.gguf")
        #expect(links == [
            Config.ModelLink(repo: "Comfy-Org/flux1-dev", file: "split_files/vae/ae.safetensors", dir: "vae"),
            Config.ModelLink(repo: "city96/FLUX.1-dev-gguf", file: "flux1-dev-Q8_0.gguf", dir: "unet", rename: "flux-q8.gguf"),
        ])
    }

    @Test("entries may be separated by commas, semicolons, spaces and newlines")
    func separators() throws {
        let links = try ModelsSpec.parse("  a/b:f1:d1 ;c/d:f2:d2\n\ne/f:f3:d3:r3,\tg/h:x/y/f4:m/n  ")
        #expect(links.map(\.repo) == ["a/b", "c/d", "e/f", "g/h"])
        #expect(links[2].rename == "r3")
        #expect(links[3].dir == "m/n")
        #expect(try ModelsSpec.parse("   ").isEmpty)
    }

    @Test("bad entries are named by index and text, all at once, as config errors (65)")
    func badEntriesNamed() {
        do {
            _ = try ModelsSpec.parse("a/b:f:d,justonefield,org-only:f:d,a/b:../etc/passwd:d,a/b:f:d:sub/name,a/b:f:")
            Issue.record("expected an error")
        } catch let e as SandboxError {
            #expect(e.status == .invalidConfig)
            #expect(!e.message.contains("entry 0 "))
            #expect(e.message.contains(#"MODELS entry 1 "justonefield": has 1 field; needs 3 or 4"#))
            #expect(e.message.contains(#"MODELS entry 2 "org-only:f:d": RepoID "org-only" must look like org/name"#))
            #expect(e.message.contains(#"MODELS entry 3 "a/b:../etc/passwd:d": RemoteFilename"#))
            #expect(e.message.contains(#"MODELS entry 4 "a/b:f:d:sub/name": LocalRename"#))
            #expect(e.message.contains(#"MODELS entry 5 "a/b:f:": TargetDir"#))
        } catch {
            Issue.record("unexpected \(error)")
        }
    }
}
