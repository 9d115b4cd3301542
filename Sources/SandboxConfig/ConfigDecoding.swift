import FoundationEssentials
import SandboxOS

/// A decoding problem with the key path it happened at.
struct ConfigIssue: Error {
    var path: [any CodingKey]
    var message: String
}

struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int?
    init(stringValue: String) { self.stringValue = stringValue }
    init(intValue: Int) {
        stringValue = String(intValue)
        self.intValue = intValue
    }
}

/// `shares[1].access` from a coding path.
func keyPathString(_ path: [any CodingKey]) -> String {
    var out = ""
    for key in path {
        if let i = key.intValue, key.stringValue == String(i) || key.stringValue.hasPrefix("Index ") {
            out += "[\(i)]"
        } else {
            out += out.isEmpty ? key.stringValue : ".\(key.stringValue)"
        }
    }
    return out
}

extension CodingUserInfoKey {
    /// The environment used for defaults that depend on it (SUDO_USER).
    package static let configEnvironment = CodingUserInfoKey(rawValue: "comfy-sandbox.environment")!
}

/// Keyed decoding with the contract's rules: every key is known, a missing key
/// takes its default, and a wrong value says what was expected.
struct StrictContainer<K: CodingKey & CaseIterable> {
    let container: KeyedDecodingContainer<K>
    let decoder: any Decoder

    init(_ decoder: any Decoder, _ keys: K.Type) throws {
        self.decoder = decoder
        // The names in the object. From ConfigJSON's tree directly: through
        // KeyedDecodingContainer.allKeys the standard library casts the keys
        // to [CodingKey], a conformance lookup that scans every record in
        // the binary on first use.
        let names: [String]
        if let tree = decoder as? ConfigJSON.TreeDecoder {
            names = try tree.objectKeys()
        } else {
            names = try decoder.container(keyedBy: AnyKey.self).allKeys.map(\.stringValue)
        }
        let known = Set(K.allCases.map(\.stringValue))
        for name in names.sorted() where !known.contains(name) {
            let list = K.allCases.map(\.stringValue).joined(separator: ", ")
            throw ConfigIssue(path: decoder.codingPath + [AnyKey(stringValue: name)], message: "unknown key; expected one of: \(list)")
        }
        container = try decoder.container(keyedBy: K.self)
    }

    func callAsFunction<T: Decodable>(_ key: K, default value: @autoclosure () -> T) throws -> T {
        try container.decodeIfPresent(T.self, forKey: key) ?? value()
    }

    func required<T: Decodable>(_ key: K) throws -> T {
        guard container.contains(key) else {
            throw ConfigIssue(path: decoder.codingPath + [key], message: "missing; this key is required")
        }
        return try container.decode(T.self, forKey: key)
    }

    func optional<T: Decodable>(_ key: K) throws -> T? {
        try container.decodeIfPresent(T.self, forKey: key)
    }
}

extension Config {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case version
        case primaryUser = "primary_user"
        case sandboxUser = "sandbox_user"
        case sharedGroup = "shared_group"
        case stateDir = "state_dir"
        case comfyui, shares
        case customNodes = "custom_nodes"
        case git, launcher, models
    }

    public init(from decoder: any Decoder) throws {
        let c = try StrictContainer(decoder, CodingKeys.self)
        version = try c(.version, default: 1)
        // userInfo is read only when the default is needed: reading it converts
        // the decoder's whole [CodingUserInfoKey: Sendable] to [..: Any], whose
        // first use in a process costs more than the rest of this initializer.
        if let user: String = try c.optional(.primaryUser) {
            primaryUser = user
        } else if let sudo = (decoder.userInfo[.configEnvironment] as? [String: String] ?? ProcessEnvironment.forConfig)["SUDO_USER"],
                  !sudo.isEmpty, sudo != "root" {
            primaryUser = sudo
        } else {
            throw ConfigIssue(path: [CodingKeys.primaryUser],
                              message: "not set, and SUDO_USER names no user; set primary_user to the human user who owns the shares, or run through sudo")
        }
        sandboxUser = try c(.sandboxUser, default: SandboxUser())
        sharedGroup = try c(.sharedGroup, default: SharedGroup())
        let explicitMembers = (try? c.container.nestedContainer(keyedBy: SharedGroup.CodingKeys.self, forKey: .sharedGroup)
            .contains(.members)) ?? false
        if !explicitMembers { sharedGroup.members = [primaryUser] }
        stateDir = try c(.stateDir, default: "/var/lib/comfy-sandbox")
        comfyui = try c(.comfyui, default: ComfyUI())
        shares = try c(.shares, default: Config.defaultShares)
        customNodes = try c(.customNodes, default: [])
        git = try c(.git, default: Git())
        launcher = try c(.launcher, default: Launcher())
        let explicitUIUsers = (try? c.container.nestedContainer(keyedBy: Launcher.CodingKeys.self, forKey: .launcher)
            .contains(.uiUsers)) ?? false
        if !explicitUIUsers { launcher.uiUsers = [primaryUser] }
        models = try c(.models, default: Models())
    }
}

extension Config.SandboxUser {
    enum CodingKeys: String, CodingKey, CaseIterable { case name, home }
    public init(from decoder: any Decoder) throws {
        let c = try StrictContainer(decoder, CodingKeys.self)
        self.init()
        name = try c(.name, default: name)
        home = try c(.home, default: home)
    }
}

/// A config value that is one of a fixed set of words.
protocol ConfigWord: RawRepresentable, CaseIterable where RawValue == String {}

extension ConfigWord {
    /// Decodes one of the words, or says which were expected: "a" or "b"; "a", "b" or "c".
    package static func decodeWord(_ decoder: any Decoder) throws -> Self {
        let raw = try decoder.singleValueContainer().decode(String.self)
        guard let v = Self(rawValue: raw) else {
            let names = allCases.map { "\"\($0.rawValue)\"" }
            let list = names.count > 1 ? names.dropLast().joined(separator: ", ") + " or " + names.last! : names.joined()
            throw ConfigIssue(path: decoder.codingPath, message: "expected \(list), got \"\(raw)\"")
        }
        return v
    }
}

extension Config.SharedGroup {
    enum CodingKeys: String, CodingKey, CaseIterable { case name, members }
    public init(from decoder: any Decoder) throws {
        let c = try StrictContainer(decoder, CodingKeys.self)
        self.init()
        name = try c(.name, default: name)
        members = try c(.members, default: [])
    }
}

extension Config.ComfyUI {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case repo, rev, path, python
        case installRequirements = "install_requirements"
        case pipArgs = "pip_args"
        case extraRequirements = "extra_requirements"
        case installer
        case preferVersions = "prefer_versions"
    }
    public init(from decoder: any Decoder) throws {
        let c = try StrictContainer(decoder, CodingKeys.self)
        self.init()
        repo = try c(.repo, default: repo)
        rev = try c(.rev, default: rev)
        path = try c(.path, default: path)
        python = try c(.python, default: python)
        installRequirements = try c(.installRequirements, default: installRequirements)
        pipArgs = try c(.pipArgs, default: [])
        extraRequirements = try c(.extraRequirements, default: extraRequirements)
        installer = try c(.installer, default: installer)
        preferVersions = try c.optional(.preferVersions)
    }
}

extension Config.Access: ConfigWord {
    public init(from decoder: any Decoder) throws { self = try Self.decodeWord(decoder) }
}

extension Config.Installer: ConfigWord {
    public init(from decoder: any Decoder) throws { self = try Self.decodeWord(decoder) }
}

extension Config.RequirementsFailure: ConfigWord {
    public init(from decoder: any Decoder) throws { self = try Self.decodeWord(decoder) }
}

extension Config.Network: ConfigWord {
    public init(from decoder: any Decoder) throws { self = try Self.decodeWord(decoder) }
}

extension Config.Share {
    enum CodingKeys: String, CodingKey, CaseIterable { case name, path, mount, access }
    public init(from decoder: any Decoder) throws {
        let c = try StrictContainer(decoder, CodingKeys.self)
        name = try c.required(.name)
        path = try c.required(.path)
        mount = try c(.mount, default: name)
        access = try c.required(.access)
    }
}

extension Config.CustomNode {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, repo, rev, enabled, writable
        case installRequirements = "install_requirements"
        case note, submodules, env
        case installScript = "install_script"
        case onRequirementsFailure = "on_requirements_failure"
    }
    public init(from decoder: any Decoder) throws {
        let c = try StrictContainer(decoder, CodingKeys.self)
        self.init(name: try c.required(.name), repo: try c.required(.repo))
        rev = try c(.rev, default: rev)
        enabled = try c(.enabled, default: enabled)
        writable = try c(.writable, default: writable)
        installRequirements = try c(.installRequirements, default: installRequirements)
        note = try c.optional(.note)
        submodules = try c(.submodules, default: submodules)
        env = try c(.env, default: [:])
        installScript = try c(.installScript, default: installScript)
        onRequirementsFailure = try c(.onRequirementsFailure, default: onRequirementsFailure)
    }
}

extension Config.Git {
    enum CodingKeys: String, CodingKey, CaseIterable { case allowedProtocols = "allowed_protocols" }
    public init(from decoder: any Decoder) throws {
        let c = try StrictContainer(decoder, CodingKeys.self)
        self.init()
        allowedProtocols = try c(.allowedProtocols, default: allowedProtocols)
    }
}

extension Config.GPU: Codable {
    public init(from decoder: any Decoder) throws {
        let s = try decoder.singleValueContainer()
        if let word = try? s.decode(String.self) {
            switch word {
            case "auto": self = .auto
            case "none": self = .none
            default:
                throw ConfigIssue(path: decoder.codingPath, message: "expected \"auto\", \"none\" or a list of GPU indexes, got \"\(word)\"")
            }
        } else if let list = try? s.decode([Int].self) {
            if let bad = list.first(where: { $0 < 0 }) {
                throw ConfigIssue(path: decoder.codingPath, message: "GPU index \(bad) is negative")
            }
            self = .indexes(list)
        } else {
            throw ConfigIssue(path: decoder.codingPath, message: "expected \"auto\", \"none\" or a list of GPU indexes like [0, 1]")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var s = encoder.singleValueContainer()
        switch self {
        case .auto: try s.encode("auto")
        case .none: try s.encode("none")
        case .indexes(let list): try s.encode(list)
        }
    }
}

extension Config.LandlockMode: Codable {
    public init(from decoder: any Decoder) throws {
        let s = try decoder.singleValueContainer()
        if let b = try? s.decode(Bool.self) {
            self = b ? .enforce : .off
        } else if let word = try? s.decode(String.self), word == "best-effort" {
            self = .bestEffort
        } else {
            throw ConfigIssue(path: decoder.codingPath, message: "expected true, false or \"best-effort\"")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var s = encoder.singleValueContainer()
        switch self {
        case .enforce: try s.encode(true)
        case .off: try s.encode(false)
        case .bestEffort: try s.encode("best-effort")
        }
    }
}

extension Config.Limits {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case nofile, nproc, memory, tasks
        case cpuWeight = "cpu_weight"
        case shmSize = "shm_size"
    }
    public init(from decoder: any Decoder) throws {
        let c = try StrictContainer(decoder, CodingKeys.self)
        self.init()
        nofile = try c(.nofile, default: nofile)
        nproc = try c(.nproc, default: nproc)
        memory = try c.optional(.memory)
        tasks = try c.optional(.tasks)
        cpuWeight = try c(.cpuWeight, default: cpuWeight)
        shmSize = try c(.shmSize, default: shmSize)
    }
}

extension Config.Launcher {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case listen, port, network, gpu, seccomp, landlock
        case ramTemp = "ram_temp"
        case limits
        case extraArgs = "extra_args"
        case allowRemoteListen = "allow_remote_listen"
        case instances
        case uiUsers = "ui_users"
        case uiHosts = "ui_hosts"
        case uiCSP = "ui_csp"
        case egress
    }
    public init(from decoder: any Decoder) throws {
        let c = try StrictContainer(decoder, CodingKeys.self)
        self.init()
        listen = try c(.listen, default: listen)
        port = try c(.port, default: port)
        network = try c(.network, default: network)
        gpu = try c(.gpu, default: gpu)
        seccomp = try c(.seccomp, default: seccomp)
        landlock = try c(.landlock, default: landlock)
        ramTemp = try c(.ramTemp, default: ramTemp)
        limits = try c(.limits, default: limits)
        extraArgs = try c(.extraArgs, default: extraArgs)
        allowRemoteListen = try c(.allowRemoteListen, default: allowRemoteListen)
        instances = try c(.instances, default: [])
        uiUsers = try c(.uiUsers, default: uiUsers)
        uiHosts = try c(.uiHosts, default: uiHosts)
        uiCSP = try c(.uiCSP, default: uiCSP)
        egress = try c(.egress, default: egress)
    }
}

extension Config.InstanceOutput: ConfigWord {
    public init(from decoder: any Decoder) throws { self = try Self.decodeWord(decoder) }
}

extension Config.Instance {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, gpu, port, memory, output
        case extraArgs = "extra_args"
    }
    public init(from decoder: any Decoder) throws {
        let c = try StrictContainer(decoder, CodingKeys.self)
        self.init(name: try c.required(.name), gpu: try c.required(.gpu), port: try c.required(.port))
        extraArgs = try c(.extraArgs, default: [])
        memory = try c.optional(.memory)
        output = try c(.output, default: output)
    }
}

extension Config.ModelLink {
    enum CodingKeys: String, CodingKey, CaseIterable { case repo, file, dir, rename, revision }
    public init(from decoder: any Decoder) throws {
        let c = try StrictContainer(decoder, CodingKeys.self)
        self.init(repo: try c.required(.repo), file: try c.required(.file), dir: try c.required(.dir))
        rename = try c.optional(.rename)
        revision = try c.optional(.revision)
    }
}

extension Config.Models {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case hfCache = "hf_cache"
        case links
    }
    public init(from decoder: any Decoder) throws {
        let c = try StrictContainer(decoder, CodingKeys.self)
        self.init()
        hfCache = try c.optional(.hfCache)
        links = try c(.links, default: links)
    }
}
