import Foundation

/// What an OTLP endpoint and its headers may be, and how they are shown
/// without leaking secrets.
public enum OTLPRules {
    /// The schemes an endpoint may use.
    public static let schemes = ["http", "https"]

    /// Why `text` is not an endpoint Flujo sends to, or nil when it is one:
    /// an `http` or `https` URL with a host and no control characters.
    public static func endpointProblem(_ text: String) -> String? {
        if text.unicodeScalars.contains(where: isControl) {
            return "an endpoint may not contain control characters"
        }
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased() else {
            return "\(redactedURL(text).debugDescription) is not a URL; expected http://host:port or https://host:port"
        }
        guard schemes.contains(scheme) else {
            return "only http and https endpoints are supported, not \(scheme.debugDescription)"
        }
        guard let host = components.host, !host.isEmpty else {
            return "\(redactedURL(text).debugDescription) has no host; expected http://host:port or https://host:port"
        }
        return nil
    }

    /// Why a header is refused, or nil: names are HTTP tokens; values hold no
    /// control characters (no CR or LF, so no header can be injected). The
    /// value is never part of the message.
    public static func headerProblem(name: String, value: String) -> String? {
        if name.isEmpty || !name.unicodeScalars.allSatisfy(isTokenCharacter) {
            // Not shown: a malformed pair may be a secret split in the wrong place.
            return "a header name is not an HTTP token (letters, digits and !#$%&'*+-.^_`|~ only; the name is not shown, as a malformed pair may hold a secret)"
        }
        if value.unicodeScalars.contains(where: { isControl($0) && $0 != "\t" }) {
            return "the value of header \(name.debugDescription) contains control characters (such as CR or LF); they are refused so that no header can be injected"
        }
        return nil
    }

    /// `url` with any user name and password replaced by `***`, for messages and logs.
    public static func redactedURL(_ url: String) -> String {
        guard let schemeEnd = url.range(of: "://") else { return url }
        let rest = url[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
        guard let at = rest[..<authorityEnd].lastIndex(of: "@") else { return url }
        return String(url[..<schemeEnd.upperBound]) + "***" + String(rest[at...])
    }

    static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || scalar.value == 0x7F || (0x80...0x9F).contains(scalar.value)
    }

    static func isTokenCharacter(_ scalar: Unicode.Scalar) -> Bool {
        guard scalar.isASCII else { return false }
        let character = Character(scalar)
        return character.isLetter || character.isNumber || "!#$%&'*+-.^_`|~".contains(character)
    }
}
