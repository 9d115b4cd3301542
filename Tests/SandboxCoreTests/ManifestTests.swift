import Dispatch
import Foundation
@testable import SandboxCore
import Testing
@testable import SandboxOS

@Suite("models manifest: record and incremental verify")
struct ManifestTests {
    let share: ModelsTempDir
    let state: ModelsTempDir

    init() throws {
        share = try ModelsTempDir("share")
        state = try ModelsTempDir("state")
        try share.write("checkpoints/a.safetensors", Data((0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }))
        try share.write("vae/b.safetensors", "vae weights")
        try share.write("loras/c.safetensors", "lora weights")
        try share.write("d.txt", "notes")
        // Past the timestamp granularity, so the entries are not "racy".
        usleep(30_000)
    }

    func record() throws -> ModelManifest {
        try Manifest.record(share: share.path, stateDir: state.path, progress: false).0
    }

    func verify(_ m: ModelManifest, rehash: Bool = false) throws -> Manifest.VerifyReport {
        try Manifest.verify(manifest: m, manifestPath: "m", share: share.path, rehash: rehash, progress: false)
    }

    /// Runs `body` on a thread and fails the test if it takes longer than `seconds`.
    func within<T: Sendable>(_ seconds: Double, _ body: @escaping @Sendable () throws -> T) throws -> T {
        let box = ModelsResultBox<T>()
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            box.value = Result { try body() }
            done.signal()
        }
        guard done.wait(timeout: .now() + seconds) == .success, let v = box.value else {
            throw SandboxError.failure("did not finish within \(seconds) s (blocked?)")
        }
        return try v.get()
    }

    @Test("record writes every regular file with size, stamps and SHA-256; a clean verify reads nothing")
    func recordAndCleanVerify() throws {
        let m = try record()
        #expect(m.files.map(\.path) == ["checkpoints/a.safetensors", "d.txt", "loras/c.safetensors", "vae/b.safetensors"])
        let d = try #require(m.files.first { $0.path == "d.txt" })
        #expect(d.size == 5)
        // the manifest on disk decodes to the same thing, and is 0644
        let loaded = try Manifest.load(stateDir: state.path)
        #expect(loaded == m)
        #expect(modelsLstat(state.sub(ModelManifest.fileName))!.st_mode & 0o7777 == 0o644)
        let r = try verify(m)
        #expect(r.ok)
        #expect(r.trusted == 4)
        #expect(r.filesRead == 0 && r.bytesRead == 0)
    }

    @Test("the SHA-256 is the real one (matches sha256sum)")
    func digestMatchesSha256sum() throws {
        let m = try record()
        let out = try HostCommand("/usr/bin/sha256sum", [share.sub("checkpoints/a.safetensors")]).run().stdoutText
        #expect(m.files[0].sha256 == String(out.prefix(64)))
    }

    @Test("unchanged files are not re-read; --rehash reads every file")
    func trustedVersusRehash() throws {
        let m = try record()
        let quick = try verify(m)
        #expect(quick.filesRead == 0)
        let full = try verify(m, rehash: true)
        #expect(full.ok)
        #expect(full.filesRead == 4)
        #expect(full.bytesRead == m.files.reduce(0) { $0 + $1.size })
    }

    @Test("a byte flipped and the mtime restored (touch -d) is caught through the ctime")
    func flippedByteMtimeRestored() throws {
        let m = try record()
        let path = share.sub("checkpoints/a.safetensors")
        let before = try #require(modelsLstat(path))
        usleep(20_000)
        let fd = open(path, O_WRONLY)
        var byte: UInt8 = 0xFF
        #expect(pwrite(fd, &byte, 1, 1000) == 1)
        close(fd)
        var times = [before.st_atim, before.st_mtim]
        #expect(utimensat(AT_FDCWD, path, &times, 0) == 0)
        let after = try #require(modelsLstat(path))
        #expect(after.st_mtim.tv_sec == before.st_mtim.tv_sec && after.st_mtim.tv_nsec == before.st_mtim.tv_nsec)
        #expect(after.st_size == before.st_size)
        let r = try verify(m)
        #expect(!r.ok)
        #expect(r.changed.map(\.path) == ["checkpoints/a.safetensors"])
        #expect(r.changed.first?.reason.contains("mtime was left unchanged") == true)
        #expect(r.filesRead == 1)
    }

    @Test("an appended file is caught")
    func appended() throws {
        let m = try record()
        let h = try #require(FileHandle(forWritingAtPath: share.sub("vae/b.safetensors")))
        h.seekToEndOfFile()
        h.write(Data("more".utf8))
        try h.close()
        let r = try verify(m)
        #expect(r.changed.map(\.path) == ["vae/b.safetensors"])
        #expect(r.changed.first?.reason.contains("size 11 -> 15") == true)
    }

    @Test("a deleted and an added file are reported")
    func deletedAndAdded() throws {
        let m = try record()
        try FileManager.default.removeItem(atPath: share.sub("loras/c.safetensors"))
        try share.write("loras/new.safetensors", "planted")
        let r = try verify(m)
        #expect(r.missing.map(\.path) == ["loras/c.safetensors"])
        #expect(r.added.map(\.path) == ["loras/new.safetensors"])
        #expect(!r.ok)
    }

    @Test("a FIFO named x.safetensors does not hang record or verify, and is reported", .timeLimit(.minutes(1)))
    func fifoDoesNotHang() throws {
        #expect(mkfifo(share.sub("x.safetensors"), 0o644) == 0)
        let share = self.share, state = self.state
        let (m, result) = try within(20) { try Manifest.record(share: share.path, stateDir: state.path, progress: false) }
        #expect(result.notHashed.map(\.path) == ["x.safetensors"])
        #expect(!m.files.contains { $0.path == "x.safetensors" })
        let r = try within(20) { try Manifest.verify(manifest: m, manifestPath: "m", share: share.path, rehash: true, progress: false) }
        #expect(r.added.map(\.path) == ["x.safetensors"])
        #expect(r.added.first?.reason.contains("fifo") == true)
        // Even opened directly, the hasher does not block on it.
        let dirFD = open(share.path, O_RDONLY | O_DIRECTORY)
        defer { close(dirFD) }
        let outcome = try within(20) { () -> FileHasher.Outcome in
            let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
            defer { buf.deallocate() }
            return FileHasher.hash(dirFD: dirFD, name: "x.safetensors", buffer: buf).0
        }
        #expect(outcome == .notRegular(kind: "fifo"))
    }

    @Test("a symlink to /dev/zero is not followed: recorded by target, a new one reported", .timeLimit(.minutes(1)))
    func symlinkNotFollowed() throws {
        try share.symlink("zero.safetensors", to: "/dev/zero")
        let share = self.share, state = self.state
        let (m, _) = try within(20) { try Manifest.record(share: share.path, stateDir: state.path, progress: false) }
        #expect(m.links == [ModelManifest.Link(path: "zero.safetensors", target: "/dev/zero")])
        #expect(m.files.count == 4)
        try share.symlink("vae/evil.safetensors", to: "/dev/zero")
        let r = try within(20) { try Manifest.verify(manifest: m, manifestPath: "m", share: share.path, rehash: true, progress: false) }
        #expect(r.added.map(\.path) == ["vae/evil.safetensors"])
        #expect(r.bytesRead == m.files.reduce(0) { $0 + $1.size })
        // A recorded file replaced by a symlink is a change, not followed.
        try FileManager.default.removeItem(atPath: share.sub("d.txt"))
        try share.symlink("d.txt", to: "/dev/zero")
        let r2 = try within(20) { try Manifest.verify(manifest: m, manifestPath: "m", share: share.path, progress: false) }
        #expect(r2.changed.map(\.path) == ["d.txt"])
    }

    @Test("an entry whose stamps fall within the granularity of hashing is re-read even though its stat matches")
    func racyEntriesReRead() throws {
        var m = try record()
        #expect(try verify(m).filesRead == 0)
        // As if hashing had begun in the same timestamp tick as d.txt's last write.
        let d = try #require(m.files.first { $0.path == "d.txt" })
        m.hashStartedNs = max(d.mtimeNs, d.ctimeNs) + m.timestampGranularityNs / 2
        #expect(m.isRacy(d))
        let r = try verify(m)
        #expect(r.ok)
        #expect(r.filesRead >= 1)
        #expect(r.trusted + r.filesRead == 4)
        // and the real clock: a file written right before recording is racy
        // iff its stamps are within the granularity of the start of hashing
        let fresh = try record()
        for e in fresh.files { #expect(fresh.isRacy(e) == (max(e.mtimeNs, e.ctimeNs) + fresh.timestampGranularityNs > fresh.hashStartedNs)) }
    }

    @Test("a file written while it is being hashed is reported as changed while hashing")
    func changedDuringHashing() throws {
        let path = try share.write("big.safetensors", Data(count: 3 * FileHasher.bufferSize / 2))
        usleep(20_000)
        let dirFD = open(share.path, O_RDONLY | O_DIRECTORY)
        defer { close(dirFD) }
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: FileHasher.bufferSize, alignment: 4096)
        defer { buf.deallocate() }
        nonisolated(unsafe) var wrote = false
        let (outcome, _) = FileHasher.hash(dirFD: dirFD, name: "big.safetensors", buffer: buf) { _ in
            guard !wrote else { return }
            wrote = true
            let fd = open(path, O_WRONLY)
            var b: UInt8 = 1
            _ = pwrite(fd, &b, 1, 10)
            close(fd)
        }
        guard case .changedWhileHashing = outcome else {
            Issue.record("expected changedWhileHashing, got \(outcome)")
            return
        }
    }

    @Test("big files hashed through mmap, chunk by chunk, give sha256sum's digest")
    func mappedDigest() throws {
        let path = try share.write("big.safetensors", Data((0..<(9 << 20) + 12345).map { UInt8(truncatingIfNeeded: $0 &* 2654435761 >> 13) }))
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        defer { buf.deallocate() }
        let (outcome, bytes) = FileHasher.hash(fd: fd, buffer: buf, mapChunk: 4 << 20)
        let out = try HostCommand("/usr/bin/sha256sum", [path]).run().stdoutText
        #expect(outcome == .hashed(sha256: String(out.prefix(64)), stamp: FileStamp(try #require(modelsLstat(path)))))
        #expect(bytes == (9 << 20) + 12345)
    }

    @Test("a file truncated while it is mapped is reported as changed while hashing, not a SIGBUS crash", .timeLimit(.minutes(1)))
    func truncatedWhileMapped() throws {
        let path = try share.write("big.safetensors", Data(count: 16 << 20))
        usleep(20_000)
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        defer { buf.deallocate() }
        // After the first 4 MiB chunk, the file shrinks to 1 MiB: the next
        // chunk's pages lie past the end.
        let (outcome, _) = FileHasher.hash(fd: fd, buffer: buf, mapChunk: 4 << 20) { _ in
            _ = truncate(path, 1 << 20)
        }
        guard case .changedWhileHashing = outcome else {
            Issue.record("expected changedWhileHashing, got \(outcome)")
            return
        }
    }

    @Test("a manifest writable by others is refused")
    func manifestPermissions() throws {
        _ = try record()
        #expect(chmod(state.sub(ModelManifest.fileName), 0o666) == 0)
        #expect(throws: SandboxError.self) { try Manifest.load(stateDir: state.path) }
    }
}

final class ModelsResultBox<T>: @unchecked Sendable {
    var value: Result<T, any Error>?
}

@Suite("models manifest index")
struct ManifestIndexTests {
    @Test("the binary index round-trips the manifest and is ignored when the JSON changed")
    func roundTripAndStale() throws {
        let share = try ModelsTempDir("share"), state = try ModelsTempDir("state")
        try share.write("a/b.safetensors", "x")
        try share.symlink("l", to: "/dev/zero")
        let (m, _) = try Manifest.record(share: share.path, stateDir: state.path, progress: false)
        let json = try Data(contentsOf: URL(fileURLWithPath: state.sub(ModelManifest.fileName)))
        let idx = try Data(contentsOf: URL(fileURLWithPath: state.sub(ManifestIndex.fileName)))
        #expect(ManifestIndex.decode(idx, jsonStamp: nil, jsonDigest: { ManifestIndex.digest(json) }) == m)
        #expect(ManifestIndex.decode(idx, jsonStamp: nil, jsonDigest: { [UInt8](repeating: 0, count: 32) }) == nil)
        // Stale (JSON edited by hand): the index is not used, the JSON wins.
        var edited = m
        edited.files[0].sha256 = String(repeating: "0", count: 64)
        try AtomicFile.write(try edited.encoded(), to: state.sub(ModelManifest.fileName), owner: nil)
        #expect(try Manifest.load(stateDir: state.path) == edited)
        // Truncated index: ignored, no crash.
        #expect(ManifestIndex.decode(idx.prefix(idx.count - 3), jsonStamp: nil, jsonDigest: { ManifestIndex.digest(json) }) == nil)
    }
}
