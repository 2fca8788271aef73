#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Flujo
import Synchronization

/// The resume claims of this process: which tasks are held, and the locks
/// that hold them against other processes.
///
/// A claim is a write lock on one byte of the database file, chosen by a hash
/// of the task id, far past anything SQLite locks (it locks bytes at 1 GiB;
/// claims use offsets from 2^40 up). The lock, not a row, is the claim: it
/// lasts while the claiming store holds it and the kernel drops it when the
/// process ends, however it ends, so a crashed resumer leaves nothing to clean
/// up. On Linux the locks are open-file-description locks, which belong to
/// the descriptor they were taken on, so SQLite closing its own descriptors
/// cannot drop them. Other systems have only POSIX locks, which any close of
/// the file by the process drops: there they are taken on a file of their
/// own next to the database (`<database>-claims`), which SQLite never opens.
///
/// Every store of the process on one file shares one descriptor (opened once,
/// never closed, so closing it cannot drop SQLite's locks) and one table of
/// held claims, which is what excludes claimers inside the process.
final class TaskClaims: Sendable {
    static let shared = TaskClaims()

    /// What a claim attempt found.
    enum Outcome: Equatable {
        case taken
        /// Held in this process, by this owner.
        case heldHere(owner: String)
        /// Held by another process.
        case heldElsewhere
    }

    /// A database file (device and inode), or an in-memory database (one store).
    enum Key: Hashable, Sendable {
        case file(device: UInt64, inode: UInt64)
        case memory(ObjectIdentifier)
    }

    private struct File {
        var descriptor: Int32
        /// Held claims by lock offset: the task and its owner.
        var held: [Int64: (taskID: String, owner: String)]
    }

    private let files = Mutex<[Key: File]>([:])

    #if os(Linux)
    private static let setLock: Int32 = 37  // F_OFD_SETLK
    #else
    private static let setLock: Int32 = F_SETLK
    #endif

    /// The key of the database at `filename` (as SQLite names it; empty for an
    /// in-memory database, which `token` then stands for).
    static func key(filename: String, token: AnyObject) -> Key {
        var info = stat()
        guard !filename.isEmpty, stat(filename, &info) == 0 else { return .memory(ObjectIdentifier(token)) }
        return .file(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
    }

    /// The lock offset of a task: 2^40 plus a 64-bit FNV-1a hash folded below 2^62.
    static func offset(of taskID: String) -> Int64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in taskID.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        let base: UInt64 = 1 << 40
        return Int64(base + hash % ((1 << 62) - base))
    }

    /// Tries to take the claim on `taskID` for `owner`, without waiting.
    func take(_ taskID: String, owner: String, key: Key, filename: String) throws(StateStoreError) -> Outcome {
        let offset = Self.offset(of: taskID)
        let result = files.withLock { files -> Result<Outcome, StateStoreError> in
            var file: File
            if let existing = files[key] {
                file = existing
            } else if case .file = key {
                #if os(Linux)
                let descriptor = open(filename, O_RDWR | O_CLOEXEC)
                #else
                let descriptor = open(filename + "-claims", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
                #endif
                if descriptor < 0 {
                    let code = errno
                    if code == EACCES || code == EROFS || code == EPERM { return .failure(.readOnly(path: filename)) }
                    return .failure(.storage(path: filename, code: code, message: "cannot open the database file to lock a claim: \(String(cString: strerror(code)))"))
                }
                file = File(descriptor: descriptor, held: [:])
            } else {
                file = File(descriptor: -1, held: [:])
            }
            if let holder = file.held[offset] {
                files[key] = file
                // Another task with the same lock byte (a hash collision) counts as held elsewhere.
                return .success(holder.taskID == taskID ? .heldHere(owner: holder.owner) : .heldElsewhere)
            }
            if file.descriptor >= 0 {
                var lock = flock()
                lock.l_type = Int16(F_WRLCK)
                lock.l_whence = Int16(SEEK_SET)
                lock.l_start = off_t(offset)
                lock.l_len = 1
                if fcntl(file.descriptor, Self.setLock, &lock) != 0 {
                    let code = errno
                    files[key] = file
                    if code == EAGAIN || code == EACCES { return .success(.heldElsewhere) }
                    return .failure(.storage(path: filename, code: code, message: "cannot lock a claim: \(String(cString: strerror(code)))"))
                }
            }
            file.held[offset] = (taskID, owner)
            files[key] = file
            return .success(.taken)
        }
        return try result.get()
    }

    /// Ends the claim on `taskID`, if this process holds it.
    func release(_ taskID: String, key: Key) {
        let offset = Self.offset(of: taskID)
        files.withLock { files in
            guard var file = files[key], file.held[offset]?.taskID == taskID else { return }
            file.held[offset] = nil
            if file.descriptor >= 0 {
                var lock = flock()
                lock.l_type = Int16(F_UNLCK)
                lock.l_whence = Int16(SEEK_SET)
                lock.l_start = off_t(offset)
                lock.l_len = 1
                _ = fcntl(file.descriptor, Self.setLock, &lock)
            }
            if case .memory = key, file.held.isEmpty {
                files[key] = nil
            } else {
                files[key] = file
            }
        }
    }
}
