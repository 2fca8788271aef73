import Foundation

/// The category, retryability and message of an error.
public struct ErrorClassification: Sendable, Hashable {
    /// The category persisted and exported.
    public var category: ErrorCategory
    /// Whether retrying may help.
    public var isRetryable: Bool
    /// The message persisted as the error text.
    public var message: String

    /// Creates a classification.
    public init(category: ErrorCategory, isRetryable: Bool, message: String) {
        self.category = category
        self.isRetryable = isRetryable
        self.message = message
    }
}

/// Maps errors thrown by steps to categories. Replace it to teach Flujo about
/// your own error types (or make them `CategorizedError`).
public protocol ErrorClassifier: Sendable {
    /// Classifies one error.
    func classify(_ error: any Error) -> ErrorClassification
}

/// The built-in classifier for Swift, Foundation and POSIX errors.
public struct DefaultErrorClassifier: ErrorClassifier {
    /// Creates the classifier.
    public init() {}

    public func classify(_ error: any Error) -> ErrorClassification {
        let message = Self.message(of: error)
        func result(_ category: ErrorCategory, _ retryable: Bool? = nil) -> ErrorClassification {
            ErrorClassification(category: category, isRetryable: retryable ?? category.isTransient, message: message)
        }
        switch error {
        case let categorized as any CategorizedError:
            return ErrorClassification(category: categorized.category, isRetryable: categorized.isRetryable, message: message)
        case is PausedSignal, is PipelineAbortSignal:
            return result(.controlFlow, false)
        case is CancellationError:
            return result(.cancelled, false)
        case is DecodingError, is EncodingError, is JSONParseError:
            return result(.validation)
        case let store as StateStoreError:
            switch store {
            case .diskFull: return result(.resourceExhaustion)
            case .locked: return result(.system, true)
            case .corrupt, .notADatabase: return result(.dataCorruption)
            case .readOnly: return result(.authorization)
            default: return result(.system)
            }
        case let url as URLError:
            return result(Self.category(of: url))
        case let posix as POSIXError:
            return result(Self.category(ofErrno: posix.code.rawValue))
        default:
            break
        }
        let nsError = error as NSError
        if nsError.domain == NSPOSIXErrorDomain {
            return result(Self.category(ofErrno: Int32(nsError.code)))
        }
        if nsError.domain == NSURLErrorDomain {
            if let code = URLError.Code(rawValue: nsError.code) { return result(Self.category(of: URLError(code))) }
        }
        if nsError.domain == NSCocoaErrorDomain {
            switch CocoaError.Code(rawValue: nsError.code) {
            case .fileReadNoPermission, .fileWriteNoPermission: return result(.authorization)
            case .fileWriteOutOfSpace: return result(.resourceExhaustion)
            case .fileReadCorruptFile: return result(.dataCorruption)
            case .coderReadCorrupt, .coderValueNotFound, .propertyListReadCorrupt: return result(.validation)
            default: break
            }
        }
        return result(.unknown, false)
    }

    static func category(of error: URLError) -> ErrorCategory {
        switch error.code {
        case .timedOut: return .timeout
        case .userAuthenticationRequired, .userCancelledAuthentication: return .authentication
        case .cancelled: return .cancelled
        case .badServerResponse, .cannotParseResponse: return .externalService
        case .badURL, .unsupportedURL: return .configuration
        case .cannotDecodeContentData, .cannotDecodeRawData: return .dataCorruption
        default: return .network
        }
    }

    static func category(ofErrno code: Int32) -> ErrorCategory {
        switch code {
        case ETIMEDOUT: return .timeout
        case ECONNREFUSED, ECONNRESET, ECONNABORTED, ENETUNREACH, ENETDOWN, EHOSTUNREACH, EPIPE, ENOTCONN: return .network
        case EACCES, EPERM: return .authorization
        case ENOSPC, ENOMEM, EMFILE, ENFILE, EDQUOT: return .resourceExhaustion
        case EINVAL: return .validation
        case ENOENT: return .configuration
        default: return .system
        }
    }

    static func message(of error: any Error) -> String {
        if error is CancellationError { return "cancelled: the task running the step was cancelled" }
        return String(describing: error)
    }
}
