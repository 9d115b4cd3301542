import FoundationEssentials
import Glibc
import SandboxOS

/// `launcher.egress`'s grammar: the entries of the list, the names they
/// allow, and where the proxy listens. The proxy and the judging of
/// addresses, requests and ClientHellos extend this in SandboxEgress.
public enum Egress {
    /// Where the proxy listens inside the sandbox's namespace (127.0.0.1), and
    /// what HTTPS_PROXY and friends name. Fixed, so that it can be documented
    /// and checked: launcher.port may not be it when egress is on.
    public static let proxyPort: UInt16 = 3128
    /// What an entry without `:port` allows.
    public static let defaultPorts: [UInt16] = [443, 80]
    public static var proxyURL: String { "http://127.0.0.1:\(proxyPort)" }

    // MARK: the list

    /// One entry of launcher.egress: `host`, `*.host`, either with `:port`.
    /// `host` alone allows exactly that name (not its subdomains) on 443 and
    /// 80; `*.host` allows every name below it, at any depth, and **not**
    /// `host` itself (list both for both); `:port` allows only that port.
    /// Names compare case-insensitively, a trailing dot ignored.
    public struct Rule: Equatable, Sendable, CustomStringConvertible {
        /// Lowercase, no trailing dot, without the `*.`.
        public var host: String
        public var wildcard: Bool
        public var ports: [UInt16]

        public init(host: String, wildcard: Bool, ports: [UInt16]) {
            self.host = host
            self.wildcard = wildcard
            self.ports = ports
        }

        /// The entry, or what is wrong with it (for a config error).
        public static func parse(_ text: String) -> Result<Rule, RuleError> {
            var rest = Substring(text)
            var ports = Egress.defaultPorts
            if let colon = rest.lastIndex(of: ":") {
                let p = rest[rest.index(after: colon)...]
                guard !p.isEmpty, p.count <= 5, p.allSatisfy({ $0.isASCII && $0.isNumber }), let n = UInt16(p), n > 0 else {
                    return .failure(RuleError("\"\(text)\": the port after \":\" must be 1-65535 (IPv6 addresses are not accepted: name the host)"))
                }
                ports = [n]
                rest = rest[..<colon]
            }
            var wildcard = false
            if rest.hasPrefix("*.") {
                wildcard = true
                rest = rest.dropFirst(2)
            }
            switch Egress.normalizeName(String(rest)) {
            case .failure(.ipLiteral):
                return .failure(RuleError("\"\(text)\" is an IP address; the list takes host names only (the proxy refuses every IP address a client asks for)"))
            case .failure(.notAName(let why)):
                return .failure(RuleError("\"\(text)\" is not a host name or *.name: \(why)"))
            case .success(let host):
                return .success(Rule(host: host, wildcard: wildcard, ports: ports))
            }
        }

        /// Whether this entry allows `host` (already normalised) on `port`.
        public func matches(host name: String, port: UInt16) -> Bool {
            guard ports.contains(port) else { return false }
            return wildcard ? name.hasSuffix("." + host) : name == host
        }

        public var description: String {
            (wildcard ? "*." : "") + host + (ports == Egress.defaultPorts ? "" : ":" + ports.map(String.init).joined(separator: ","))
        }
    }

    public struct RuleError: Error, Equatable, Sendable {
        public var message: String
        init(_ message: String) { self.message = message }
    }

    /// The parsed list; entries that do not parse are left out (the config
    /// validator has already refused them).
    public static func rules(_ entries: [String]) -> [Rule] {
        entries.compactMap { try? Rule.parse($0).get() }
    }

    /// Whether any entry allows `host` (normalised) on `port`.
    public static func allows(_ rules: [Rule], host: String, port: UInt16) -> Bool {
        rules.contains { $0.matches(host: host, port: port) }
    }

    /// Hugging Face's hub answers on huggingface.co (HTTPS): when the list
    /// allows it, the launcher leaves HF_HUB_OFFLINE unset so that
    /// huggingface_hub asks it; otherwise the hub would only time out.
    public static func allowsHuggingFace(_ rules: [Rule]) -> Bool {
        allows(rules, host: "huggingface.co", port: 443)
    }

    // MARK: names

    public enum NameProblem: Error, Equatable, Sendable {
        /// An IP address in any spelling inet_aton takes (1.2.3.4, 2130706433,
        /// 0x7f.1, 0177.0.0.1), an IPv6 address, bracketed or not, or a name
        /// whose last label is numeric (what no registry gives out).
        case ipLiteral
        case notAName(String)
    }

    /// A host name as the proxy compares it: ASCII letters, digits and
    /// hyphens in labels of 1-63 (IDNs in their punycode form, `xn--`),
    /// lowercased, at most 253 characters, one trailing dot removed.
    public static func normalizeName(_ text: String) -> Result<String, NameProblem> {
        guard !text.isEmpty else { return .failure(.notAName("empty")) }
        if text.hasPrefix("[") || text.contains(":") { return .failure(.ipLiteral) }
        guard text.utf8.allSatisfy({ $0 < 0x80 }) else {
            return .failure(.notAName("not ASCII: write an internationalised name in its punycode form (xn--...)"))
        }
        var name = text.lowercased()
        if name.hasSuffix(".") { name.removeLast() }
        var a4 = in_addr()
        if inet_aton(name, &a4) != 0 { return .failure(.ipLiteral) }
        guard !name.isEmpty, name.utf8.count <= 253 else { return .failure(.notAName("longer than 253 characters")) }
        let labels = name.split(separator: ".", omittingEmptySubsequences: false)
        for label in labels {
            guard (1...63).contains(label.utf8.count) else { return .failure(.notAName("a label is empty or longer than 63 characters")) }
            guard label.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2d }) else {
                return .failure(.notAName("only letters, digits, hyphens and dots"))
            }
            guard label.first != "-", label.last != "-" else { return .failure(.notAName("a label begins or ends with a hyphen")) }
        }
        if let last = labels.last, last.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) || (last.hasPrefix("0x") && last.count > 2) {
            return .failure(.ipLiteral)
        }
        return .success(name)
    }
}
