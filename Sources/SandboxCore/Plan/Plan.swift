import FoundationEssentials
import SandboxOS
import SandboxConfig

/// The areas of provisioning, in the order they are applied.
public enum Area: String, CaseIterable, Sendable, Comparable {
    case accounts, tree, comfyui, python, nodes, models

    public static func < (a: Area, b: Area) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

/// One change provisioning would make: what, where, from -> to. `plan` prints
/// these and `provision` runs the very same objects, so the two cannot
/// disagree.
public struct Change: Sendable {
    public let area: Area
    /// A verb phrase: "create group", "set mode", "add member", "clone", "link".
    public let action: String
    /// Where: a path, a user or group name, a node name.
    public let target: String
    public let from: String?
    public let to: String?
    let perform: @Sendable () throws -> Void

    public init(_ area: Area, _ action: String, _ target: String, from: String? = nil, to: String? = nil,
                perform: @escaping @Sendable () throws -> Void) {
        self.area = area
        self.action = action
        self.target = target
        self.from = from
        self.to = to
        self.perform = perform
    }

    public func apply() throws { try perform() }

    /// One line: `tree: set mode /home/alice/ai/models 0755 -> 2755`.
    public var line: String {
        var s = "\(area.rawValue): \(action) \(target)"
        switch (from, to) {
        case let (f?, t?): s += " \(f) -> \(t)"
        case let (nil, t?): s += " -> \(t)"
        case let (f?, nil): s += " (\(f))"
        default: break
        }
        return s
    }
}

/// What a planner may assume about changes earlier areas will have made when
/// `plan` runs on a system where they are not made yet (the sandbox user does
/// not exist, so its uid is not known).
public struct PlanContext: Sendable {
    /// True under `plan`: earlier areas' changes are pending, not applied.
    public var dryRun: Bool
    public init(dryRun: Bool) { self.dryRun = dryRun }
}

/// Computes the changes one area needs. Planners read the system and change
/// nothing; all changing happens in the closures of the changes they return.
public protocol Planner: Sendable {
    var area: Area { get }
    func changes(for config: Config, context: PlanContext) throws -> [Change]
}
