import Glibc

/// Reads of our own environment. `ProcessInfo.processInfo.environment` copies
/// every variable into a new dictionary on each call; `run`'s start-up read
/// it four times for four names. These read just the names asked for.
public enum ProcessEnvironment {
    public static func value(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }

    /// The variables the config depends on (`COMFY_SANDBOX_CONFIG` for its
    /// path, `SUDO_USER` for a missing `primary_user`), in the form
    /// `ConfigLoader` takes so tests can pass their own.
    public static var forConfig: [String: String] {
        var env: [String: String] = [:]
        for name in ["COMFY_SANDBOX_CONFIG", "SUDO_USER"] { env[name] = value(name) }
        return env
    }
}
