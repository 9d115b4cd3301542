// swift-tools-version: 6.0
// comfy-sandbox: run ComfyUI with untrusted custom nodes under a dedicated,
// confined account. Each target stands on the ones below it and on nothing
// above (as apple/containerization layers ContainerizationOS under
// Containerization):
//   CSandbox       C seam for what Swift cannot call (raw set*id, openat2,
//                  fchmodat2, landlock_*, capset, the fork-time privilege
//                  drop, the constructed root)
//   CSeccomp/CACL  system libraries (libseccomp, libacl)
//   SandboxOS      the seam's typed wrappers: owned descriptors (over
//                  swift-system's FileDescriptor and Errno), SafeFS and the
//                  one tree walker, spawn and the constructed root, Landlock,
//                  accounts, the kernel's features. Knows no config.
//   SandboxConfig  the config: its model, JSON, validation, and the grammar
//                  of the values other rooms parse (ui_hosts, egress entries)
//   SandboxUI      the relay and the UI's door (who, where from, what)
//   SandboxEgress  the egress proxy and its judging of names and addresses
//   SandboxCore    plan/apply, accounts, tree, state, git/nodes, sessions and
//                  their confinement, integrity, status: the tool's decisions,
//                  testable without a binary
//   SandboxCheck   check-sandbox's attacks, from inside and outside a session
//   SandboxService the systemd units, rendered and installed
//   SandboxCommands  one ParsableCommand per verb: parses and calls the core
//   comfy-sandbox  the executable
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
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
    ],
    targets: [
        .target(
            name: "CSandbox",
            cSettings: [.define("_GNU_SOURCE")]
        ),
        .systemLibrary(name: "CSeccomp", pkgConfig: "libseccomp",
                       providers: [.apt(["libseccomp-dev"])]),
        .systemLibrary(name: "CACL", providers: [.apt(["libacl1-dev"])]),
        .target(
            name: "SandboxOS",
            dependencies: [
                "CSandbox", "CSeccomp", "CACL",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .target(
            name: "SandboxConfig",
            dependencies: ["SandboxOS"]
        ),
        .target(
            name: "SandboxUI",
            dependencies: ["SandboxOS", "SandboxConfig", .product(name: "Crypto", package: "swift-crypto")]
        ),
        .target(
            name: "SandboxEgress",
            dependencies: ["SandboxOS", "SandboxConfig", "SandboxUI"]
        ),
        .target(
            name: "SandboxCore",
            dependencies: [
                "SandboxOS", "SandboxConfig", "SandboxUI", "SandboxEgress",
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // Rooms above the core, each one concern: the check-sandbox attacks
        // (from inside and outside a session) and the systemd units.
        .target(
            name: "SandboxCheck",
            dependencies: ["SandboxOS", "SandboxConfig", "SandboxUI", "SandboxEgress", "SandboxCore", .product(name: "Crypto", package: "swift-crypto")]
        ),
        .target(
            name: "SandboxService",
            dependencies: ["SandboxOS", "SandboxConfig", "SandboxCore"]
        ),
        .target(
            name: "SandboxCommands",
            dependencies: [
                "SandboxOS", "SandboxConfig", "SandboxUI", "SandboxEgress", "SandboxCore", "SandboxCheck", "SandboxService",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "comfy-sandbox",
            dependencies: ["SandboxCommands"]
        ),
        .testTarget(
            name: "SandboxCoreTests",
            dependencies: ["SandboxOS", "SandboxConfig", "SandboxUI", "SandboxEgress", "SandboxCore", "SandboxCheck", "SandboxService", "SandboxCommands"],
            // ComfyUI-Manager snapshots, read by path (#filePath), not bundled.
            exclude: ["Fixtures"]
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["CSandbox", "SandboxOS", "SandboxConfig", "SandboxUI", "SandboxEgress", "SandboxCore", "SandboxCheck", "SandboxService"]
        ),
    ]
)
