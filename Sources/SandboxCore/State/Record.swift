import FoundationEssentials
import SandboxOS

/// `state_dir/nodes/NAME.json` and `state_dir/comfyui.json`, exactly as the
/// contract fixes them.
public struct CheckoutRecord: Codable, Equatable, Sendable {
    public enum Status: String, Codable, Sendable, CaseIterable {
        case installed, updated
        case upToDate = "up_to_date"
        case rolledBack = "rolled_back"
        case disabled, failed
    }

    public struct Event: Codable, Equatable, Sendable {
        public var sha: String
        public var at: String
        public var action: String
        public init(sha: String, at: String, action: String) {
            self.sha = sha
            self.at = at
            self.action = action
        }
    }

    public var name: String
    public var repoURL: String
    public var currentSHA: String
    public var previousSHA: String?
    public var installedAt: String
    public var updatedAt: String
    public var status: Status
    public var history: [Event]

    enum CodingKeys: String, CodingKey {
        case name
        case repoURL = "repo_url"
        case currentSHA = "current_sha"
        case previousSHA = "previous_sha"
        case installedAt = "installed_at"
        case updatedAt = "updated_at"
        case status, history
    }

    public init(name: String, repoURL: String, currentSHA: String, previousSHA: String? = nil,
                installedAt: String, updatedAt: String, status: Status, history: [Event]) {
        self.name = name
        self.repoURL = repoURL
        self.currentSHA = currentSHA
        self.previousSHA = previousSHA
        self.installedAt = installedAt
        self.updatedAt = updatedAt
        self.status = status
        self.history = history
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(repoURL, forKey: .repoURL)
        try c.encode(currentSHA, forKey: .currentSHA)
        try c.encode(previousSHA, forKey: .previousSHA)   // null, not absent, when none
        try c.encode(installedAt, forKey: .installedAt)
        try c.encode(updatedAt, forKey: .updatedAt)
        try c.encode(status, forKey: .status)
        try c.encode(history, forKey: .history)
    }

    public func encoded() throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        var d = try e.encode(self)
        d.append(0x0A)
        return d
    }
}
