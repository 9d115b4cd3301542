import ArgumentParser
import FoundationEssentials
import Glibc
import SandboxCore
import SandboxOS

public struct VerifyModels: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "verify-models",
        abstract: "Check the models share against its manifest.",
        discussion: """
        Reports files added, missing, changed or unreadable since record-models.
        A file whose (dev, inode, size, mtime, ctime) is unchanged is trusted
        without reading it; --rehash reads everything. Exit 0 when clean, 3 on
        any problem.
        """
    )
    @OptionGroup public var options: ConfigOptions
    @OptionGroup public var output: OutputOptions
    @Flag(name: .long, help: "Read and hash every file, trusting no stat.")
    public var rehash = false
    @Option(name: .long, help: "Files hashed at once (default: one per CPU).")
    public var jobs: Int?
    public init() {}

    public func run() throws {
        let config = try options.load()
        let share = try ModelsShare.path(config)
        let manifest = try Manifest.load(stateDir: config.stateDir)
        if manifest.share != share {
            printError("warning: the manifest was recorded for \(manifest.share), the config's models share is \(share)")
        }
        let report = try Manifest.verify(manifest: manifest, manifestPath: Manifest.manifestPath(stateDir: config.stateDir),
                                         share: share, rehash: rehash, workers: jobs ?? FileHasher.defaultWorkers,
                                         progress: !output.json)
        // Only root may write state; a user running a check still gets the answer.
        if geteuid() == 0 {
            do {
                let lock = try StateLock.acquire(stateDir: config.stateDir, command: "verify-models", timeout: 30)
                defer { lock.release() }
                try ModelsVerifyRecord(report, rehash: rehash).save(stateDir: config.stateDir)
            } catch {
                printError("warning: could not record the verify result for status: \(error)")
            }
        }
        if output.json {
            try printJSON(report)
        } else {
            for (label, items) in [("added", report.added), ("missing", report.missing),
                                   ("changed", report.changed), ("unreadable", report.unreadable)] {
                for i in items { print("\(label): \(i.path): \(i.reason)") }
            }
            for i in report.notEntered { print("note: \(i.path): \(i.reason)") }
            let problems = report.added.count + report.missing.count + report.changed.count + report.unreadable.count
            let summary = "\(report.files) files in the manifest of \(report.recordedAt): \(report.trusted) trusted by stat, \(report.filesRead) read (\(ByteProgress.size(report.bytesRead))) in \(Format.fixed(report.seconds, 3)) s"
            if report.ok {
                print("ok: " + summary)
                if !report.restamped.isEmpty {
                    print("note: \(report.restamped.count) file(s) have new timestamps but the recorded content; run record-models to stop re-reading them")
                }
            } else {
                print("PROBLEM: \(problems) finding(s); " + summary)
            }
        }
        if !report.ok { throw ExitCode(ExitStatus.problem.rawValue) }
    }
}
