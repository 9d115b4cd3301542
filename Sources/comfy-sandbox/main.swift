import SandboxCommands

ComfySandbox.run()
