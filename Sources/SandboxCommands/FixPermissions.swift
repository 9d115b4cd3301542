import ArgumentParser
import FoundationEssentials
import Glibc
import SandboxCore
import SandboxOS

public struct FixPermissions: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "fix-permissions",
        abstract: "Re-apply group, modes, setgid and ACLs across the shares, safely.",
        discussion: """
        Directories get the shared group, setgid and mode 2755 (read-only share) or
        2775 plus the group's default ACL (read-write); files get the shared group
        and 0644 / 0664 (0755 / 0775 when executable), setuid and setgid cleared.
        The walk is by file descriptor and never follows a symlink or enters another
        file system; symlinks, FIFOs, sockets, devices and files with several hard
        links are skipped and listed with the reason. Holds the state lock.
        """
    )
    @OptionGroup public var options: ConfigOptions
    @OptionGroup public var output: OutputOptions
    @Argument(help: ArgumentHelp("Share names (default: every share).", valueName: "share"))
    public var shares: [String] = []
    public init() {}

    public func run() throws {
        let config = try options.load()
        for name in shares where config.share(named: name) == nil {
            throw SandboxError(.usage, "no share named \"\(name)\"; the config has: \(config.shares.map(\.name).joined(separator: ", "))")
        }
        try requireRoot("fix-permissions")
        guard let group = AccountLookup.group(config.sharedGroup.name) else {
            throw SandboxError.failure("the shared group \(config.sharedGroup.name) (shared_group.name) does not exist",
                                       hint: "run `comfy-sandbox provision` first")
        }
        let lock = try StateLock.acquire(stateDir: config.stateDir, command: "fix-permissions", onWait: { printError($0) })
        defer { lock.release() }
        let tty = isatty(2) == 1 && !output.json
        var reports: [PermissionFixer.Report] = []
        for share in config.shares where shares.isEmpty || shares.contains(share.name) {
            var fixer = PermissionFixer(share: share, gid: group.gid)
            if tty { fixer.progress = { printProgress("\(share.name): \($0) entries checked") } }
            let report = try fixer.run()
            if tty { printProgress(nil) }
            reports.append(report)
            if report.changed > 0 {
                try Journal(stateDir: config.stateDir).append("fix-permissions",
                    "\(share.name): \(report.changed) changed (group \(report.groupChanged), mode \(report.modeChanged), ACL \(report.aclChanged), setuid/setgid cleared \(report.setidCleared)), \(report.skipped.count) skipped")
            }
            if !output.json { printText(report) }
        }
        if output.json {
            try printJSON(reports)
        }
    }

    func printText(_ r: PermissionFixer.Report) {
        print("\(r.share) (\(r.path)): \(r.checked) checked, \(r.changed) changed "
              + "(group \(r.groupChanged), mode \(r.modeChanged), ACL \(r.aclChanged), setuid/setgid cleared \(r.setidCleared)), "
              + "\(r.skipped.count) skipped")
        var byReason: [String: Int] = [:]
        for s in r.skipped {
            print("  skipped \(s.path): \(s.reason)")
            byReason[s.reason, default: 0] += 1
        }
        for (reason, n) in byReason.sorted(by: { $0.key < $1.key }) where r.skipped.count > 1 {
            print("  \(n) × \(reason)")
        }
    }
}

/// One progress line on a terminal, rewritten in place; nil clears it.
func printProgress(_ text: String?) {
    writeAll(2, Data(("\r\u{1b}[K" + (text ?? "")).utf8))
}
