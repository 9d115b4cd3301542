/// What a confined program's output may do to the operator's terminal.
///
/// A terminal obeys the bytes written to it: besides drawing, some
/// sequences act on the machine around it. OSC 52 writes the clipboard, OSC 8
/// plants links, DCS, APC, PM and SOS strings reach terminal and multiplexer
/// extensions (tmux passthrough, DECRQSS), and queries (cursor position,
/// device attributes, window reports) make the terminal *type* its answer
/// into whatever reads it next. This filter is a streaming state machine
/// over the bytes the sandbox writes, fed chunk by chunk as they arrive;
/// a sequence split across reads is held until it is complete.
///
/// - `.interactive` (the sandbox's own pty, relayed): everything a shell or
///   a full-screen program draws with passes, CSI and ESC sequences included;
///   a query's answer goes back into the sandbox's own pty. String sequences
///   (OSC, DCS, APC, PM, SOS) and C1 controls are dropped.
/// - `.output` (the sandbox writes to a pipe we pass on to a terminal; it has
///   no terminal of its own and no business driving one): text, newlines,
///   tabs, carriage returns, backspaces and colours (SGR, `ESC [ ... m`) pass,
///   every other control and sequence is dropped. Here a query's answer would
///   be typed into the operator's shell.
///
/// UTF-8 text passes unchanged, whatever the chunking; the C1 controls in
/// both their 8-bit form and their UTF-8 form (U+0080-U+009F, e.g. U+009D,
/// a one-character OSC on some terminals) are treated as the sequences they
/// introduce.
public struct TerminalFilter: Sendable {
    public enum Policy: Sendable { case interactive, output }

    enum State: Sendable { case ground, esc, escIntermediate, csi, skipCSI, string, stringEsc }

    public let policy: Policy
    var state = State.ground
    /// The sequence being collected (ESC first), emitted whole or dropped.
    var sequence: [UInt8] = []
    /// Continuation bytes the current UTF-8 character still has.
    var continuation = 0
    /// A 0xC2 lead byte held back: the next byte says whether it is a C1 control.
    var heldC2 = false

    static let maxSequence = 64

    public init(_ policy: Policy) { self.policy = policy }

    /// The bytes of `input` that may reach the terminal.
    public mutating func filter<C: Collection>(_ input: C) -> [UInt8] where C.Element == UInt8 {
        var out: [UInt8] = []
        out.reserveCapacity(input.count)
        for b in input { step(b, &out) }
        return out
    }

    mutating func step(_ b: UInt8, _ out: inout [UInt8]) {
        switch state {
        case .ground: ground(b, &out)
        case .esc: escape(b, &out)
        case .escIntermediate:
            if (0x20...0x2F).contains(b) {
                collect(b)
            } else if (0x30...0x7E).contains(b) {
                sequence.append(b)
                finish(emit: policy == .interactive, &out)
            } else {
                abort(b, &out)
            }
        case .csi:
            if (0x40...0x7E).contains(b) {
                sequence.append(b)
                finish(emit: allowCSI(), &out)
            } else if (0x20...0x3F).contains(b) {
                collect(b)
            } else {
                abort(b, &out)
            }
        case .skipCSI:
            if (0x40...0x7E).contains(b) { state = .ground } else if !(0x20...0x3F).contains(b) { abort(b, &out) }
        case .string:
            // Dropped up to its end: BEL, ST (ESC \ or U+009C in UTF-8), or
            // CAN/SUB. A raw 0x9C byte is not taken as ST: in UTF-8 it is a
            // continuation byte of the text inside (a title, a path).
            if heldC2 {
                heldC2 = false
                if b == 0x9C { state = .ground; return }
            }
            switch b {
            case 0x07, 0x18, 0x1A: state = .ground
            case 0x1B: state = .stringEsc
            case 0xC2: heldC2 = true
            default: break
            }
        case .stringEsc:
            // ESC \ ends the string; ESC followed by anything else ends it too
            // (as xterm does) and starts a new sequence.
            if b == UInt8(ascii: "\\") {
                state = .ground
            } else {
                state = .esc
                sequence = [0x1B]
                escape(b, &out)
            }
        }
    }

    mutating func ground(_ b: UInt8, _ out: inout [UInt8]) {
        if heldC2 {
            heldC2 = false
            if (0x80...0x9F).contains(b) { c1(b); return }
            out.append(0xC2)
            continuation = 1
        }
        if continuation > 0 {
            if (0x80...0xBF).contains(b) { out.append(b); continuation -= 1; return }
            continuation = 0
        }
        switch b {
        case 0x1B:
            state = .esc
            sequence = [b]
        case 0xC2:
            heldC2 = true
        case 0xC3...0xF4:
            out.append(b)
            continuation = b >= 0xF0 ? 3 : b >= 0xE0 ? 2 : 1
        case 0x80...0x9F:
            // Not inside a UTF-8 character: an 8-bit C1 control.
            c1(b)
        case 0x0A, 0x0D, 0x09, 0x08:
            out.append(b)
        case 0x00...0x1F, 0x7F:
            if policy == .interactive { out.append(b) }
        default:
            out.append(b)
        }
    }

    /// The C1 control `b` (8-bit or UTF-8 form): CSI and the string
    /// introducers start their sequence; the rest are dropped.
    mutating func c1(_ b: UInt8) {
        switch b {
        case 0x9B:
            state = .csi
            sequence = [0x1B, UInt8(ascii: "[")]
        case 0x90, 0x98, 0x9D, 0x9E, 0x9F:
            state = .string
        default:
            break
        }
    }

    mutating func escape(_ b: UInt8, _ out: inout [UInt8]) {
        switch b {
        case UInt8(ascii: "["):
            sequence.append(b)
            state = .csi
        case UInt8(ascii: "]"), UInt8(ascii: "P"), UInt8(ascii: "X"), UInt8(ascii: "^"), UInt8(ascii: "_"):
            sequence = []
            state = .string
        case 0x1B:
            sequence = [b]
        case 0x20...0x2F:
            sequence.append(b)
            state = .escIntermediate
        case 0x30...0x7E:
            sequence.append(b)
            finish(emit: policy == .interactive, &out)
        default:
            abort(b, &out)
        }
    }

    mutating func collect(_ b: UInt8) {
        sequence.append(b)
        if sequence.count > Self.maxSequence {
            sequence = []
            state = state == .csi ? .skipCSI : .ground
        }
    }

    /// Colours only in `.output`: `ESC [` digits, `;` and `:` then `m`.
    func allowCSI() -> Bool {
        if policy == .interactive { return true }
        guard sequence.last == UInt8(ascii: "m") else { return false }
        return sequence.dropFirst(2).dropLast().allSatisfy { (0x30...0x3B).contains($0) }
    }

    mutating func finish(emit: Bool, _ out: inout [UInt8]) {
        if emit { out += sequence }
        sequence = []
        state = .ground
    }

    /// A sequence cut short by a byte that cannot be in it: the sequence is
    /// dropped; CAN and SUB only cancel, ESC starts anew, anything else is
    /// then taken as it comes.
    mutating func abort(_ b: UInt8, _ out: inout [UInt8]) {
        sequence = []
        state = .ground
        if b == 0x18 || b == 0x1A { return }
        ground(b, &out)
    }
}
