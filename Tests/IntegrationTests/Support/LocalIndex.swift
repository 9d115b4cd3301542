import Foundation
import SandboxCore
import SandboxOS

/// A local package index (a --find-links directory) the tests build
/// themselves, so requirement installs run offline and exactly: wheels
/// written by hand (zip, METADATA, WHEEL, RECORD) and sdists whose in-tree
/// PEP 517 backend needs nothing from an index and runs code at build time.
struct LocalIndex {
    let dir: String

    init(_ dir: String) throws {
        self.dir = dir
        try World.sh("mkdir -p '\(dir)' && chmod 0755 '\(dir)'")
    }

    /// `name-version-py3-none-any.whl` holding `name/__init__.py` = `source`.
    func wheel(_ name: String, _ version: String, requires: [String] = [], source: String? = nil) throws {
        let script = """
        import base64, hashlib, sys, zipfile
        d, name, version, src = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
        reqs = [r for r in sys.argv[5:] if r]
        info = f"{name}-{version}.dist-info"
        files = {
            f"{name}/__init__.py": src,
            f"{info}/METADATA": "Metadata-Version: 2.1\\nName: %s\\nVersion: %s\\n%s" % (name, version, "".join("Requires-Dist: %s\\n" % r for r in reqs)),
            f"{info}/WHEEL": "Wheel-Version: 1.0\\nGenerator: comfy-sandbox-tests\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
        }
        record = []
        for p, text in files.items():
            data = text.encode()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{p},sha256={digest},{len(data)}")
        record.append(f"{info}/RECORD,,")
        files[f"{info}/RECORD"] = "\\n".join(record) + "\\n"
        with zipfile.ZipFile(f"{d}/{name}-{version}-py3-none-any.whl", "w") as z:
            for p, text in files.items():
                z.writestr(p, text)
        """
        let src = source ?? "VERSION = '\(version)'\n"
        let args = ([dir, name, version, src] + requires).map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
        let r = try World.sh("python3 -c '\(script.replacingOccurrences(of: "'", with: "'\\''"))' \(args) && chmod 0644 '\(dir)/\(name)-\(version)-py3-none-any.whl'")
        guard r.succeeded else { throw SandboxError.failure("making the wheel \(name): \(r.stderrText)") }
    }

    /// An sdist whose in-tree backend writes, at build time, the uid that
    /// built it into the package: running code at install time is exactly
    /// what must not happen as root.
    func sdistRecordingBuilder(_ name: String, _ version: String) throws {
        let base = "\(name)-\(version)"
        let backend = """
        import base64, hashlib, os, zipfile
        N, V = "\(name)", "\(version)"
        def get_requires_for_build_wheel(config_settings=None): return []
        def get_requires_for_build_sdist(config_settings=None): return []
        def _meta(): return "Metadata-Version: 2.1\\nName: %s\\nVersion: %s\\n" % (N, V)
        def prepare_metadata_for_build_wheel(d, config_settings=None):
            info = "%s-%s.dist-info" % (N, V)
            os.makedirs(os.path.join(d, info), exist_ok=True)
            open(os.path.join(d, info, "METADATA"), "w").write(_meta())
            return info
        def build_wheel(d, config_settings=None, metadata_directory=None):
            info = "%s-%s.dist-info" % (N, V)
            files = {"%s/__init__.py" % N: "BUILT_BY_UID = %d\\n" % os.getuid(), info + "/METADATA": _meta(),
                     info + "/WHEEL": "Wheel-Version: 1.0\\nGenerator: t\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"}
            rec = []
            for p, t in files.items():
                h = base64.urlsafe_b64encode(hashlib.sha256(t.encode()).digest()).rstrip(b"=").decode()
                rec.append("%s,sha256=%s,%d" % (p, h, len(t.encode())))
            files[info + "/RECORD"] = "\\n".join(rec + [info + "/RECORD,,"]) + "\\n"
            whl = "%s-%s-py3-none-any.whl" % (N, V)
            with zipfile.ZipFile(os.path.join(d, whl), "w") as z:
                for p, t in files.items(): z.writestr(p, t)
            return whl
        """
        let pyproject = "[build-system]\nrequires = []\nbuild-backend = \"backend\"\nbackend-path = [\".\"]\n\n[project]\nname = \"\(name)\"\nversion = \"\(version)\"\n"
        let src = dir + "/.src/" + base
        try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
        try backend.write(toFile: src + "/backend.py", atomically: true, encoding: .utf8)
        try pyproject.write(toFile: src + "/pyproject.toml", atomically: true, encoding: .utf8)
        try "Metadata-Version: 2.1\nName: \(name)\nVersion: \(version)\n".write(toFile: src + "/PKG-INFO", atomically: true, encoding: .utf8)
        let r = try World.sh("tar -C '\(dir)/.src' -czf '\(dir)/\(base).tar.gz' '\(base)' && rm -rf '\(dir)/.src' && chmod 0644 '\(dir)/\(base).tar.gz'")
        guard r.succeeded else { throw SandboxError.failure("making the sdist \(name): \(r.stderrText)") }
    }

    /// pip_args that install from this directory alone.
    var pipArgs: [String] { ["--no-index", "--find-links", dir] }
}
