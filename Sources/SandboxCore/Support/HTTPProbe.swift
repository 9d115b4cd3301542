import FoundationEssentials
import Glibc
import SandboxOS

/// A tiny HTTP/WebSocket client: check-sandbox's reachability checks, and
/// `start` and `status` asking whether the UI answers.
public enum HTTPProbe {
    public struct Outcome { public var ok: Bool; public var detail: String; public var body: String }

    static func connectTo(_ host: String, _ port: UInt16, timeout: Int = 10) -> Int32 {
        guard let endpoint = IPEndpoint(host: host, port: port) else { errno = EINVAL; return -1 }
        let fd = endpoint.streamSocket()
        guard fd >= 0 else { return -1 }
        var tv = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        if endpoint.withSockaddr({ connect(fd, $0, $1) }) != 0 { let e = errno; close(fd); errno = e; return -1 }
        return fd
    }

    /// Everything until EOF. A signal (EINTR) does not end it; the socket's
    /// 10 s receive timeout (EAGAIN) or an error does, with what came so far:
    /// the callers judge the status line, which a cut-off reply still has or
    /// visibly lacks.
    static func readAll(_ fd: Int32) -> String {
        var data = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            data += chunk[..<n]
        }
        return String(decoding: data, as: UTF8.self)
    }

    public static func get(host: String, port: UInt16, path: String, timeout: Int = 10) -> Outcome {
        let fd = connectTo(host, port, timeout: timeout)
        guard fd >= 0 else { return Outcome(ok: false, detail: "connect \(IPEndpoint.urlAuthority(host, Int(port))): \(Errno.current)", body: "") }
        defer { close(fd) }
        writeAll(fd, Array("GET \(path) HTTP/1.1\r\nHost: \(IPEndpoint.urlAuthority(host, Int(port)))\r\nConnection: close\r\n\r\n".utf8))
        let text = readAll(fd)
        let status = text.split(separator: "\r\n").first.map(String.init) ?? "no response"
        let body = text.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n")
        return Outcome(ok: status.contains(" 200 "), detail: status, body: body)
    }

    public static func websocketEcho(host: String, port: UInt16, message: String, path: String = "/ws") -> Outcome {
        let fd = connectTo(host, port)
        guard fd >= 0 else { return Outcome(ok: false, detail: "connect \(IPEndpoint.urlAuthority(host, Int(port))): \(Errno.current)", body: "") }
        defer { close(fd) }
        let key = Data((0..<16).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        writeAll(fd, Array(("GET \(path) HTTP/1.1\r\nHost: \(IPEndpoint.urlAuthority(host, Int(port)))\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                         + "Sec-WebSocket-Key: \(key)\r\nSec-WebSocket-Version: 13\r\n\r\n").utf8))
        let head = readHead(fd)
        guard head.hasPrefix("HTTP/1.1 101") else {
            return Outcome(ok: false, detail: "no upgrade: \(head.split(separator: "\r\n").first ?? "nothing")", body: "")
        }
        let payload = Array(message.utf8)
        let mask: [UInt8] = [1, 2, 3, 4]
        writeAll(fd, [0x81, 0x80 | UInt8(payload.count)] + mask + payload.enumerated().map { $0.element ^ mask[$0.offset % 4] })
        var frame = [UInt8](repeating: 0, count: 2 + payload.count)
        var got = 0
        while got < frame.count { let n = frame[got...].withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }; if n <= 0 { break }; got += n }
        let echoed = got == frame.count && Array(frame[2...]) == payload
        return Outcome(ok: echoed, detail: echoed ? "101, frame echoed" : "101, but no echo (\(got) bytes)", body: "")
    }

    /// Reads one HTTP head, byte by byte through the blank line (at most 16 KiB).
    public static func readHead(_ fd: Int32) -> String {
        var data = [UInt8]()
        var byte: UInt8 = 0
        while data.count < 16384 && read(fd, &byte, 1) == 1 {
            data.append(byte)
            if data.suffix(4) == [13, 10, 13, 10] { break }
        }
        return String(decoding: data, as: UTF8.self)
    }
}
