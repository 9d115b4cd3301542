import ArgumentParser
import FoundationEssentials
import Glibc
import SandboxCore
import SandboxOS

/// `__internal hash FILE...`: the hasher of record-models/verify-models on
/// plain files, for the P5 benchmark. Prints `sha256  path` per file (like
/// sha256sum) and, on stderr, bytes, seconds and GB/s.
struct InternalHash: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hash",
        abstract: "Hash files with the models hasher (benchmark entry point).",
        shouldDisplay: false
    )
    @Option(name: .long, help: "Files hashed at once (default: one per CPU).")
    var jobs: Int?
    @Option(name: .long, help: "Read buffer size in KiB (default: the hasher's).")
    var bufferKib: Int?
    @Argument var files: [String]

    func run() throws {
        var jobs: [FileHasher.Job] = []
        var dirFDs: [Int32] = []
        defer { for fd in dirFDs { close(fd) } }
        for f in files {
            let dir = Paths.deletingLastComponent(f)
            let fd = open(dir.isEmpty ? "." : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard fd >= 0 else { throw SandboxError.failure("cannot open \(dir): \(Errno.current)") }
            dirFDs.append(fd)
            var st = stat()
            let name = Paths.lastComponent(f)
            guard fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { throw SandboxError.failure("cannot stat \(f): \(Errno.current)") }
            jobs.append(FileHasher.Job(dirFD: fd, name: name, size: Int64(st.st_size)))
        }
        let start = Date()
        let results = FileHasher.hashAll(jobs, workers: self.jobs ?? FileHasher.defaultWorkers,
                                         bufferSize: bufferKib.map { $0 << 10 } ?? FileHasher.bufferSize)
        let seconds = Date().timeIntervalSince(start)
        var bytes: Int64 = 0
        var failed = false
        for (f, (outcome, n)) in zip(files, results) {
            bytes += n
            if case .hashed(let sha, _) = outcome {
                print("\(sha)  \(f)")
            } else {
                printError("\(f): \(outcome)")
                failed = true
            }
        }
        printError("hashed \(bytes) bytes in \(Format.fixed(seconds, 3)) s: \(Format.fixed(Double(bytes) / seconds / 1e9, 2)) GB/s")
        if failed { throw ExitCode(1) }
    }
}
