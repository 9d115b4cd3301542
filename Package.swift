// swift-tools-version: 6.0
// comfy-sandbox: run ComfyUI with untrusted custom nodes under a dedicated,
// confined account. The targets mirror the architecture:
//   CSandbox       C seam for what Swift cannot call (prctl, raw set*id, openat2,
//                  fchmodat2, landlock_*, capset, the fork-time privilege drop)
//   CSeccomp/CCap/CACL  system libraries (libseccomp, libcap, libacl)
//   SandboxCore    config, plan/apply, accounts, tree, state, git/nodes,
//                  confinement, integrity: everything testable without a binary
//   SandboxCommands  one ParsableCommand per verb, thin over SandboxCore
//   comfy-sandbox  the executable: parses and calls
import PackageDescription

let package = Package(
    name: "comfy-sandbox",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "comfy-sandbox", targets: ["comfy-sandbox"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
    ],
    targets: [
        .target(
            name: "CSandbox",
            cSettings: [.define("_GNU_SOURCE")]
        ),
        .systemLibrary(name: "CSeccomp", pkgConfig: "libseccomp",
                       providers: [.apt(["libseccomp-dev"])]),
        .systemLibrary(name: "CCap", pkgConfig: "libcap",
                       providers: [.apt(["libcap-dev"])]),
        .systemLibrary(name: "CACL", providers: [.apt(["libacl1-dev"])]),
        .target(
            name: "SandboxCore",
            dependencies: [
                "CSandbox", "CSeccomp", "CCap", "CACL",
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .target(
            name: "SandboxCommands",
            dependencies: [
                "SandboxCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "comfy-sandbox",
            dependencies: ["SandboxCommands"]
        ),
        .testTarget(
            name: "SandboxCoreTests",
            dependencies: ["SandboxCore", "SandboxCommands"],
            // ComfyUI-Manager snapshots, read by path (#filePath), not bundled.
            exclude: ["Fixtures"]
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["SandboxCore"]
        ),
    ]
)
