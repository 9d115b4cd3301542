import SandboxCore
import Testing
import SandboxOS

@Suite("terminal filter: what the sandbox's output may do to the operator's terminal")
struct TerminalFilterTests {
    static let esc = "\u{1b}"

    /// Fed in every possible two-way split and byte by byte: the result never
    /// depends on how the bytes arrived.
    func filtered(_ policy: TerminalFilter.Policy, _ text: [UInt8]) -> [UInt8] {
        var whole = TerminalFilter(policy)
        let expected = whole.filter(text)
        for cut in 0...text.count {
            var f = TerminalFilter(policy)
            let got = f.filter(text[..<cut]) + f.filter(text[cut...])
            #expect(got == expected, "split at \(cut) differs")
        }
        var f = TerminalFilter(policy)
        #expect(text.flatMap { f.filter([$0]) } == expected, "byte by byte differs")
        return expected
    }

    func filtered(_ policy: TerminalFilter.Policy, _ text: String) -> String {
        String(decoding: filtered(policy, Array(text.utf8)), as: UTF8.self)
    }

    @Test("OSC 52 (clipboard), OSC 8, DCS, APC, PM and SOS strings are dropped, with BEL or ST endings",
          arguments: [TerminalFilter.Policy.interactive, .output])
    func stringsDropped(_ policy: TerminalFilter.Policy) {
        let e = Self.esc
        let input = "a\(e)]52;c;cm0gLXJmIH4=\u{07}b\(e)]8;;http://evil.example/\(e)\\c\(e)P+q544e\(e)\\d\(e)_apc\(e)\\e\(e)^pm\(e)\\f\(e)Xsos\(e)\\g"
        #expect(filtered(policy, input) == "abcdefg")
    }

    @Test("C1 controls in UTF-8 and 8-bit form introduce the same strings and are dropped with them")
    func c1Forms() {
        // U+009D (OSC) encoded in UTF-8, ended by U+009C (ST); then a raw 0x9D ... BEL.
        let utf8: [UInt8] = Array("x".utf8) + [0xC2, 0x9D] + Array("52;c;AAAA".utf8) + [0xC2, 0x9C] + Array("y".utf8)
        #expect(filtered(.interactive, utf8) == Array("xy".utf8))
        let raw: [UInt8] = Array("x".utf8) + [0x9D] + Array("52;c;AAAA".utf8) + [0x07] + Array("y".utf8)
        #expect(filtered(.interactive, raw) == Array("xy".utf8))
        // U+009B, a one-character CSI: kept as ESC [ interactively, colours only in .output.
        #expect(filtered(.interactive, [0xC2, 0x9B] + Array("2J".utf8)) == Array("\u{1b}[2J".utf8))
        #expect(filtered(.output, [0xC2, 0x9B] + Array("2J".utf8)).isEmpty)
    }

    @Test("UTF-8 text passes unchanged, continuation bytes 0x80-0x9F included")
    func utf8Text() {
        let text = "é → ✓ Ŝ ÿ 日本 🙂 ©"   // → is E2 86 92, Ŝ is C5 9C, © is C2 A9
        #expect(filtered(.interactive, text) == text)
        #expect(filtered(.output, text) == text)
        // Inside a (dropped) title, a UTF-8 character holding 0x9C does not end it early.
        #expect(filtered(.interactive, "\(Self.esc)]0;Ŝtitle\u{07}ok") == "ok")
    }

    @Test("interactive: what shells and full-screen programs draw with passes")
    func interactiveKeepsDrawing() {
        let e = Self.esc
        let drawing = "\(e)[31mred\(e)[0m\(e)[2J\(e)[H\(e)[?1049h\(e)[?25l\(e)(B\(e)7\(e)8\r\n\u{07}\u{08}\t"
        #expect(filtered(.interactive, drawing) == drawing)
    }

    @Test("output: colours, newlines and tabs pass; queries, cursor moves and other controls do not")
    func outputOnlyColours() {
        let e = Self.esc
        #expect(filtered(.output, "\(e)[1;31mred\(e)[0m\tok\r\n") == "\(e)[1;31mred\(e)[0m\tok\r\n")
        // Queries whose answers the terminal would type into the operator's shell.
        #expect(filtered(.output, "a\(e)[6nb\(e)[cc\(e)[>cd\(e)[21te\(e)[?1049hf\u{05}g\(e)Zh") == "abcdefgh")
        #expect(filtered(.output, "a\(e)[2Jb\(e)cc") == "abc", "no clearing, no full reset")
    }

    @Test("a sequence cut short or overlong is dropped; CAN aborts it; nothing hangs on to later text")
    func damaged() {
        let e = Self.esc
        #expect(filtered(.interactive, "a\(e)[31\u{18}b") == "ab")
        #expect(filtered(.interactive, "a\(e)\(e)[1mb") == "a\(e)[1mb")
        let long = "a\(e)[" + String(repeating: "1;", count: 100) + "mb"
        #expect(filtered(.interactive, long) == "ab")
        #expect(filtered(.interactive, "a\(e)]52;c;unterminated") == "a", "an unterminated string swallows what follows it")
    }
}
