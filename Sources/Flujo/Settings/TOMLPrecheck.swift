import Foundation

/// A lexical check run before the TOML parser sees a file.
///
/// The parser behind TOMLKit (toml++) asserts, instead of reporting an error,
/// on some malformed keys and table headers. This check finds what TOML never
/// allows in those places first and reports it with its line and column:
/// characters that may stand only inside strings and comments (non-ASCII, `\`,
/// `;` ...), control characters, one-line strings broken by a line end, table
/// headers that are not `[key(.key)*]`, lines that neither continue a value nor
/// start with `key =`, and inline-table entries that do not start with `key =`.
/// It also refuses keys of more than `maxKeyParts` dotted parts, which the
/// parser nests as deep as they go, recursively, until the stack runs out.
enum TOMLPrecheck {
    /// The most dotted parts a key or table header may have (Flujo's own have at most three).
    static let maxKeyParts = 64

    /// The problem with a key of more than `maxKeyParts` parts, or nil.
    private static func tooManyParts(_ key: some StringProtocol, line: Int) -> (line: Int, message: String)? {
        let parts = key.utf8.reduce(1) { $1 == UInt8(ascii: ".") ? $0 + 1 : $0 }
        guard parts > maxKeyParts else { return nil }
        return (line, "a key of \(parts) dotted parts; at most \(maxKeyParts) are read (Flujo's keys have at most 3)")
    }

    /// Characters that can never stand outside a string or comment in TOML.
    private static let neverBare: Set<Character> = ["\\", "!", "$", "%", "&", "(", ")", "*", "/", ";", "<", ">", "?", "@", "^", "`", "|", "~"]

    /// A key: bare, or quoted on one line.
    private static let key = #"(?:[A-Za-z0-9_-]+|"(?:[^"\\\n]|\\.)*"|'[^'\n]*')"#
    private static let dottedKey = #"\s*"# + key + #"(?:\s*\.\s*"# + key + #")*\s*"#

    /// The first problem found, with its 1-based line and a message; nil when none.
    static func check(_ text: String) -> (line: Int, message: String)? {
        if let bad = firstForbiddenCharacter(in: text) {
            let shown = bad.character.isNewline
                ? "a line break inside a one-line string"
                : "character " + bad.character.unicodeScalars.map { "U+" + String($0.value, radix: 16, uppercase: true) }.joined(separator: " ")
                    + " (\(String(bad.character).debugDescription)) outside a quoted string or comment"
            return (bad.line, "\(shown) at column \(bad.column)")
        }
        return firstMalformedKey(in: text)
    }

    /// The first character TOML allows only inside strings and comments standing
    /// outside them, a control character other than tab, or a line break inside a
    /// one-line string.
    static func firstForbiddenCharacter(in text: String) -> (line: Int, column: Int, character: Character)? {
        enum Mode { case plain, basic, literal, multilineBasic, multilineLiteral, comment }
        var mode = Mode.plain
        var line = 1, column = 0
        let characters = Array(text)
        var index = 0
        func starts(_ token: String) -> Bool {
            let token = Array(token)
            return index + token.count <= characters.count && Array(characters[index..<index + token.count]) == token
        }
        while index < characters.count {
            let character = characters[index]
            column += 1
            if character == "\n" || character == "\r\n" {
                if mode == .basic || mode == .literal { return (line, column, character) }
                line += 1
                column = 0
                if mode == .comment { mode = .plain }
                index += 1
                continue
            }
            if let ascii = character.asciiValue, (ascii < 0x20 && ascii != 0x09) || ascii == 0x7F {
                return (line, column, character)
            }
            switch mode {
            case .plain:
                if character == "#" {
                    mode = .comment
                } else if starts("\"\"\"") || starts("'''") {
                    mode = character == "\"" ? .multilineBasic : .multilineLiteral
                    index += 3
                    column += 2
                    continue
                } else if character == "\"" {
                    mode = .basic
                } else if character == "'" {
                    mode = .literal
                } else if character.asciiValue == nil || neverBare.contains(character) {
                    return (line, column, character)
                }
            case .basic, .multilineBasic:
                if character == "\\" {
                    index += 2
                    column += 1
                    continue
                }
                if mode == .basic && character == "\"" { mode = .plain }
                if mode == .multilineBasic && starts("\"\"\"") {
                    mode = .plain
                    index += 3
                    column += 2
                    continue
                }
            case .literal:
                if character == "'" { mode = .plain }
            case .multilineLiteral:
                if starts("'''") {
                    mode = .plain
                    index += 3
                    column += 2
                    continue
                }
            case .comment:
                break
            }
            index += 1
        }
        return nil
    }

    /// The first place where a key is expected but something else stands.
    static func firstMalformedKey(in text: String) -> (line: Int, message: String)? {
        guard let header = try? Regex(#"^\s*\[\[?"# + dottedKey + #"\]\]?\s*(?:#.*)?$"#),
              let assignment = try? Regex("^" + dottedKey + "="),
              let entry = try? Regex("^" + dottedKey + "(?:=|$)")
        else { return nil }
        var open: [Character] = []      // brackets and braces of a value that spans lines
        var multiline: String?           // the closing quotes of an open multi-line string
        for (index, raw) in text.components(separatedBy: "\n").enumerated() {
            let line = raw.hasSuffix("\r") ? String(raw.dropLast()) : raw
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            var rest = Substring(line)
            if multiline == nil && open.isEmpty && !trimmed.isEmpty && !trimmed.hasPrefix("#") {
                if trimmed.hasPrefix("[") {
                    if (try? header.wholeMatch(in: line)) == nil {
                        return (index + 1, "a table header must be [name] or [name.name]")
                    }
                    if let deep = tooManyParts(trimmed.prefix { $0 != "#" }, line: index + 1) { return deep }
                    continue
                }
                guard let key = try? assignment.prefixMatch(in: line) else {
                    return (index + 1, "expected `key = value`")
                }
                if let deep = tooManyParts(line[key.range], line: index + 1) { return deep }
                rest = rest.drop { $0 != "=" }
            }
            var expectKey = false
            while let character = rest.first {
                if let closing = multiline {
                    if rest.hasPrefix(closing) {
                        multiline = nil
                        rest = rest.dropFirst(3)
                    } else {
                        rest = rest.dropFirst(character == "\\" && closing == "\"\"\"" ? 2 : 1)
                    }
                    continue
                }
                if expectKey && character != " " && character != "\t" {
                    expectKey = false
                    if character != "}" {
                        let text = String(rest)
                        guard let key = try? entry.prefixMatch(in: text) else {
                            return (index + 1, "expected `key = value` inside { }")
                        }
                        if let deep = tooManyParts(text[key.range], line: index + 1) { return deep }
                    }
                }
                switch character {
                case "#":
                    rest = rest.dropFirst(rest.count)
                    continue
                case "\"", "'":
                    let triple = String(repeating: character, count: 3)
                    if rest.hasPrefix(triple) {
                        multiline = triple
                        rest = rest.dropFirst(3)
                        continue
                    }
                    rest = rest.dropFirst()
                    while let next = rest.first, next != character {
                        rest = rest.dropFirst(next == "\\" && character == "\"" ? 2 : 1)
                    }
                    rest = rest.dropFirst()
                    continue
                case "{":
                    open.append("{")
                    expectKey = true
                case "[":
                    open.append("[")
                case "}", "]":
                    if !open.isEmpty { open.removeLast() }
                case ",":
                    expectKey = open.last == "{"
                default:
                    break
                }
                rest = rest.dropFirst()
            }
        }
        return nil
    }
}
