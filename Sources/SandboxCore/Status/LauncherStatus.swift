import Foundation

public enum LauncherStatus {
    public static func items(_ config: Config) -> [StatusItem] { [] }
}
