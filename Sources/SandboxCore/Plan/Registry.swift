/// Every planner, in application order. Each area adds its own here.
public enum Planners {
    public static func all() -> [any Planner] {
        [
            AccountsPlanner(),
            TreePlanner(),
            ComfyUIPlanner(),
            PythonPlanner(),
            NodesPlanner(),
            ModelLinksPlanner(),
        ]
    }
}
