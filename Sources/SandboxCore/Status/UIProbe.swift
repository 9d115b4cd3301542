import FoundationEssentials
import SandboxOS
import SandboxConfig

/// Does ComfyUI answer on `launcher.listen:launcher.port`? Asked the way a
/// browser asks (GET / through the relay), so it proves the whole path: the
/// host's socket, the relay, the namespace and ComfyUI's own server. The
/// relay answers 503 while nothing listens inside, so only a status below
/// 500 counts.
public enum UIProbe {
    public struct Answer: Sendable {
        public var answers: Bool
        public var detail: String
    }

    /// The address to ask: the listen address, or loopback for a wildcard.
    public static func host(_ listen: String) -> String {
        switch listen {
        case "0.0.0.0": "127.0.0.1"
        case "::": "::1"
        default: listen
        }
    }

    public static func ask(_ config: Config, timeout: Int = 3) -> Answer {
        let host = host(config.launcher.listen)
        let r = HTTPProbe.get(host: host, port: UInt16(config.launcher.port), path: "/", timeout: timeout)
        let parts = r.detail.split(separator: " ")
        if parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let code = Int(parts[1]), code < 500 {
            return Answer(answers: true, detail: "answers (GET / \(code))")
        }
        return Answer(answers: false, detail: "does not answer (\(r.detail))")
    }
}
