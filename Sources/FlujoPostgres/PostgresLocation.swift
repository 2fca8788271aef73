import Foundation

/// Where a PostgreSQL state database is: read from a `postgres://` state URI
/// (`[state] uri`, `FLUJO_STATE_URI`, `--db`).
///
/// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?connect_timeout=S&statement_timeout_ms=MS&reconnect_window=S&pool_size=N&sslmode=disable|prefer|require]`.
/// The password comes from the URI, else `PGPASSWORD`, else the password file
/// (`PGPASSFILE`, or `~/.pgpass`: `host:port:database:user:password` lines,
/// `*` matching anything), as libpq finds it. It is never part of
/// `description`, of an error, or of a log line.
public struct PostgresLocation: Sendable, Hashable, CustomStringConvertible {
    /// TLS use, as libpq's `sslmode` names it.
    public enum TLSMode: String, Sendable, Hashable {
        /// Plain TCP.
        case disable
        /// TLS when the server offers it.
        case prefer
        /// TLS or no connection.
        case require
    }

    /// The server's host name or address.
    public var host: String
    /// Its port.
    public var port: Int
    /// The role to log in as.
    public var user: String
    /// The database.
    public var database: String
    /// The password, when one was found.
    public var password: String?
    /// How long connecting may take (`connect_timeout`, seconds; default 10).
    public var connectTimeout: Duration
    /// The longest a statement may run (`statement_timeout_ms`; default 30,000).
    public var statementTimeoutMs: Int
    /// TLS use (`sslmode`; default `prefer`).
    public var tls: TLSMode
    /// How long a store whose connection was lost (a server restart, a killed
    /// session) has to connect again and take its locks back, and so how long
    /// after a server starts no task is claimed or recovered
    /// (`reconnect_window`, seconds; default 10).
    public var reconnectWindow: Duration
    /// The most connections a store opens for its statements (`pool_size`;
    /// default 4), besides the one holding its locks. They are opened as
    /// concurrent work needs them.
    public var poolSize: Int

    /// Whether `uri` names a PostgreSQL database.
    public static func isPostgres(_ uri: String) -> Bool {
        uri.hasPrefix("postgres://") || uri.hasPrefix("postgresql://")
    }

    /// The port of a URI's authority when it is there and not digits (what
    /// makes `URLComponents` refuse the URI); never any part before the `@`,
    /// which may hold a password.
    static func malformedPort(_ uri: String) -> String? {
        guard let scheme = uri.range(of: "://") else { return nil }
        let authority = uri[scheme.upperBound...].prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        let hostPort = authority.split(separator: "@", omittingEmptySubsequences: false).last ?? authority[...]
        guard !hostPort.hasSuffix("]"), let colon = hostPort.lastIndex(of: ":") else { return nil }
        let port = hostPort[hostPort.index(after: colon)...]
        return port.isEmpty || port.allSatisfy({ $0.isASCII && $0.isNumber }) ? nil : String(port)
    }

    /// Reads a state URI; `environment` supplies `PGPASSWORD`, `PGPASSFILE` and `HOME`.
    public init(uri: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws(PostgresStoreError) {
        guard Self.isPostgres(uri) else {
            throw .invalidURI("expected postgres://user@host:port/database, got a URI of another scheme")
        }
        guard let components = URLComponents(string: uri) else {
            if let port = Self.malformedPort(uri) {
                throw .invalidURI("port \(port.debugDescription) is not a number: write postgres://user@host:5432/database")
            }
            throw .invalidURI("not a valid URI (check for spaces or unescaped characters; escape them as %XX)")
        }
        guard let host = components.host, !host.isEmpty else {
            throw .invalidURI("no host: write postgres://user@host:5432/database")
        }
        guard let user = components.user, !user.isEmpty else {
            throw .invalidURI("no user: write postgres://user@\(host):\(components.port ?? 5432)/database")
        }
        let database = String(components.path.drop { $0 == "/" })
        guard !database.isEmpty, !database.contains("/") else {
            throw .invalidURI("no database: write postgres://\(user)@\(host):\(components.port ?? 5432)/database")
        }
        let port = components.port ?? 5432
        guard (1...65_535).contains(port) else { throw .invalidURI("port \(port) is not between 1 and 65535") }
        self.host = host
        self.port = port
        self.user = user.removingPercentEncoding ?? user
        self.database = database.removingPercentEncoding ?? database
        connectTimeout = .seconds(10)
        statementTimeoutMs = 30_000
        tls = .prefer
        reconnectWindow = .seconds(10)
        poolSize = 4
        for item in components.queryItems ?? [] {
            let value = item.value ?? ""
            switch item.name {
            case "connect_timeout":
                connectTimeout = try Self.seconds(item.name, value, allowingZero: false)
            case "statement_timeout_ms":
                statementTimeoutMs = try Self.wholeNumber(item.name, value, in: 1...86_400_000, "a number of milliseconds between 1 and 86400000")
            case "reconnect_window":
                reconnectWindow = try Self.seconds(item.name, value, allowingZero: true)
            case "pool_size":
                poolSize = try Self.wholeNumber(item.name, value, in: 1...256, "a whole number from 1 to 256")
            case "sslmode":
                guard let mode = TLSMode(rawValue: value) else {
                    throw .invalidURI("sslmode \(value.debugDescription) is not one of disable, prefer, require")
                }
                tls = mode
            default:
                throw .invalidURI("unknown parameter \(item.name.debugDescription) (known: connect_timeout, statement_timeout_ms, reconnect_window, pool_size, sslmode)")
            }
        }
        if let secret = components.password {
            password = secret.removingPercentEncoding ?? secret
        } else if let secret = environment["PGPASSWORD"], !secret.isEmpty {
            password = secret
        } else {
            let file = environment["PGPASSFILE"] ?? environment["HOME"].map { $0 + "/.pgpass" }
            password = file.flatMap { Self.passwordFromFile($0, host: host, port: port, database: self.database, user: self.user) }
        }
    }

    /// A duration parameter given in seconds, at most an hour.
    private static func seconds(_ name: String, _ value: String, allowingZero: Bool) throws(PostgresStoreError) -> Duration {
        guard let seconds = Double(value), seconds.isFinite, allowingZero ? seconds >= 0 : seconds > 0, seconds <= 3600 else {
            throw .invalidURI("\(name) \(value.debugDescription) is not a number of seconds between 0 and 3600")
        }
        return .milliseconds(Int(seconds * 1000))
    }

    /// A whole-number parameter within `range`; `expected` says what it must be.
    private static func wholeNumber(_ name: String, _ value: String, in range: ClosedRange<Int>, _ expected: String) throws(PostgresStoreError) -> Int {
        guard let number = Int(value), range.contains(number) else {
            throw .invalidURI("\(name) \(value.debugDescription) is not \(expected)")
        }
        return number
    }

    /// `postgres://user@host:port/database`: never the password.
    public var description: String { "postgres://\(user)@\(host):\(port)/\(database)" }

    /// The password of the first matching line of a libpq password file.
    static func passwordFromFile(_ path: String, host: String, port: Int, database: String, user: String) -> String? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        for line in text.split(whereSeparator: \.isNewline) where !line.hasPrefix("#") {
            // Fields are separated by `:`; `\:` and `\\` escape them.
            var fields: [String] = [""]
            var escaped = false
            for character in line {
                if escaped {
                    fields[fields.count - 1].append(character)
                    escaped = false
                } else if character == "\\" {
                    escaped = true
                } else if character == ":" && fields.count < 5 {
                    fields.append("")
                } else {
                    fields[fields.count - 1].append(character)
                }
            }
            guard fields.count == 5 else { continue }
            let wanted = [host, String(port), database, user]
            if zip(fields.prefix(4), wanted).allSatisfy({ $0 == "*" || $0 == $1 }) { return fields[4] }
        }
        return nil
    }
}
