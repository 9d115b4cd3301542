import FoundationEssentials
import SandboxOS

/// Finds, reads, decodes and validates the config. Every error is exit 65 and
/// names the file and the key path; nothing here touches the disk beyond
/// reading the file.
public enum ConfigLoader {
    public static let defaultPath = "/etc/comfy-sandbox/config.json"

    /// `--config`, else `$COMFY_SANDBOX_CONFIG`, else the default path.
    public static func resolvePath(_ explicit: String?, environment: [String: String] = ProcessEnvironment.forConfig) -> String {
        if let explicit, !explicit.isEmpty { return explicit }
        if let env = environment["COMFY_SANDBOX_CONFIG"], !env.isEmpty { return env }
        return defaultPath
    }

    public static func load(path: String, environment: [String: String] = ProcessEnvironment.forConfig) throws -> Config {
        guard let data = try? readFile(path) else {
            let why = Paths.exists(path) ? "cannot be read" : "does not exist"
            throw SandboxError.config("\(path): config file \(why)",
                                      hint: "pass --config PATH or set COMFY_SANDBOX_CONFIG; config/comfy-sandbox.json is a documented example")
        }
        return try decode(data, format: path.hasSuffix(".plist") ? .plist : .json, file: path, environment: environment)
    }

    public enum Format: Sendable { case json, plist }

    public static func decode(_ data: Data, format: Format, file: String = "<config>",
                              environment: [String: String] = ProcessEnvironment.forConfig) throws -> Config {
        let config: Config
        do {
            switch format {
            case .json:
                if let fast = ConfigJSON.decode(data, environment: environment) {
                    config = fast
                } else {
                    let d = JSONDecoder()
                    d.userInfo[.configEnvironment] = environment
                    config = try d.decode(Config.self, from: data)
                }
            case .plist:
                let d = PropertyListDecoder()
                d.userInfo[.configEnvironment] = environment
                config = try d.decode(Config.self, from: data)
            }
        } catch let issue as ConfigIssue {
            throw SandboxError.config("\(file): \(keyPathString(issue.path)): \(issue.message)")
        } catch let error as DecodingError {
            throw SandboxError.config("\(file): \(describe(error))")
        } catch {
            throw SandboxError.config("\(file): cannot be parsed: \(error)")
        }
        let problems = ConfigValidator.problems(in: config)
        guard problems.isEmpty else {
            throw SandboxError.config(problems.map { "\(file): \($0)" }.joined(separator: "\n"),
                                      hint: "fix the keys named above; nothing on disk was changed")
        }
        return config
    }

    package static func describe(_ error: DecodingError) -> String {
        func at(_ ctx: DecodingError.Context) -> String {
            let p = keyPathString(ctx.codingPath)
            return p.isEmpty ? "" : "\(p): "
        }
        switch error {
        case .typeMismatch(let type, let ctx):
            return "\(at(ctx))expected \(typeName(type))"
        case .valueNotFound(let type, let ctx):
            return "\(at(ctx))expected \(typeName(type)), got null"
        case .keyNotFound(let key, let ctx):
            return "\(keyPathString(ctx.codingPath + [key])): missing; this key is required"
        case .dataCorrupted(let ctx):
            // The property-list parser puts its detail ("unexpected EOF ...") under
            // NSDebugDescription (NSDebugDescriptionErrorKey, not in FoundationEssentials).
            let under = (ctx.underlyingError as? CocoaError)?.userInfo["NSDebugDescription"] as? String
            return "\(at(ctx))not valid: \(under ?? ctx.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }

    package static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Bool.Type: "true or false"
        case is Int.Type, is UInt64.Type: "a whole number"
        case is [String].Type: "a list of strings"
        case is [Any].Type: "a list"
        default:
            String(describing: type).contains("Array") ? "a list" : "an object"
        }
    }
}
