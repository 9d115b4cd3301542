import Foundation

public enum ModelsStatus {
    public static func items(_ config: Config) -> [StatusItem] { [] }
}
