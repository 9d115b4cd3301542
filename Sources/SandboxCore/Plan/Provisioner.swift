import FoundationEssentials
import SandboxOS
import SandboxConfig

/// Runs the planners of `Planners.all()` in area order. `plan` computes every
/// area against the system as it is (dry run) and changes nothing;
/// `provision` computes one area, applies its changes, and only then plans the
/// next, so later areas see what earlier ones made (the tree needs the group's
/// gid). Both use the very same Change objects.
public struct Provisioner: Sendable {
    public var config: Config
    /// nil: every area.
    public var only: Set<Area>?

    public init(config: Config, only: Set<Area>? = nil) {
        self.config = config
        self.only = only
    }

    var planners: [any Planner] {
        Planners.all().filter { only?.contains($0.area) ?? true }.sorted { $0.area < $1.area }
    }

    /// Every change provisioning would make now, nothing applied.
    public func plan() throws -> [Change] {
        let context = PlanContext(dryRun: true)
        var out: [Change] = []
        for p in planners { out += try p.changes(for: config, context: context) }
        return out
    }

    /// Plans and applies area by area; each applied change is journaled and
    /// reported through `onApplied`. Returns the applied changes.
    @discardableResult
    public func provision(journal: Journal? = nil, onApplied: (Change) -> Void = { _ in }) throws -> [Change] {
        let context = PlanContext(dryRun: false)
        var applied: [Change] = []
        for p in planners {
            for change in try p.changes(for: config, context: context) {
                do {
                    try change.apply()
                } catch let e as SandboxError {
                    var e = e
                    e.message = "\(change.line): \(e.message)"
                    throw e
                }
                try journal?.append("provision", change.line)
                applied.append(change)
                onApplied(change)
            }
        }
        return applied
    }

    /// Parses `--only accounts,tree`. Throws a usage-style message on an unknown area.
    public static func parseAreas(_ list: [String]) throws -> Set<Area>? {
        let names = list.flatMap { $0.split(separator: ",").map { $0.trimmingWhitespace() } }.filter { !$0.isEmpty }
        if names.isEmpty { return nil }
        var out = Set<Area>()
        for n in names {
            guard let a = Area(rawValue: n) else {
                throw SandboxError(.usage, "--only: unknown area \"\(n)\"; choose from \(Area.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            out.insert(a)
        }
        return out
    }

    /// Appends the links of a MODELS spec (`--models` or `$MODELS`) to the
    /// config and validates the result again (exit 65 on any problem).
    public static func addModels(_ specs: [String], to config: inout Config) throws {
        for spec in specs where !spec.trimmingWhitespace().isEmpty {
            config.models.links += try ModelsSpec.parse(spec)
        }
        let problems = ConfigValidator.problems(in: config)
        if !problems.isEmpty {
            throw SandboxError.config(problems.joined(separator: "\n"), hint: "fix the keys named above or the MODELS spec; nothing on disk was changed")
        }
    }
}
