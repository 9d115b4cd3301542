import Foundation

public enum ProvisionStatus {
    public static func items(_ config: Config) -> [StatusItem] { [] }
}
