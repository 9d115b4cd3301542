import Foundation

/// The `MODELS` string of the RunPod images: `RepoID:RemoteFilename:TargetDir[:LocalRename]`.
public enum ModelsSpec {
    /// Parses every entry of a MODELS string. Throws a config error naming the bad entry.
    public static func parse(_ spec: String) throws -> [Config.ModelLink] {
        throw SandboxError.config("MODELS: not implemented yet")
    }
}
