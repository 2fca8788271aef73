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
    /// One per process, because the kernel's locks are per process: every store on a file must share its descriptor and its table of held claims.
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
        /// Whether `descriptor` was opened for writing (write locks need it).
        var writable: Bool
        /// Held claims by lock offset: the task and its owner.
        var held: [Int64: (taskID: String, owner: String)]
        /// Read-only descriptors replaced by a writable one: kept open, since
        /// closing a descriptor of the database can drop SQLite's POSIX locks.
        var retired: [Int32] = []
        /// The identity under which this process holds its owner lock on the file, once it does.
        var ownerIdentity: String?
    }

    private let files = Mutex<[Key: File]>([:])

    #if os(Linux)
    private static let setLock: Int32 = 37  // F_OFD_SETLK
    private static let getLock: Int32 = 36  // F_OFD_GETLK
    #else
    private static let setLock: Int32 = F_SETLK
    private static let getLock: Int32 = F_GETLK
    #endif

    /// Opens the file the locks are taken on: the database itself on Linux,
    /// `<database>-claims` elsewhere (created only when a claim is taken).
    private static func openLockFile(_ filename: String, writable: Bool) -> Int32 {
        #if os(Linux)
        return open(filename, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC)
        #else
        return open(filename + "-claims", writable ? (O_RDWR | O_CREAT | O_CLOEXEC) : (O_RDONLY | O_CLOEXEC), 0o644)
        #endif
    }

    private static func lock(_ type: Int32, at offset: Int64) -> flock {
        var lock = flock()
        lock.l_type = Int16(type)
        lock.l_whence = Int16(SEEK_SET)
        lock.l_start = off_t(offset)
        lock.l_len = 1
        return lock
    }

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

    /// The owner lock offset of a process: 2^62 plus a hash below 2^30, apart from every claim.
    static func ownerOffset(of owner: String) -> Int64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in owner.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return Int64((UInt64(1) << 62) + hash % (1 << 30))
    }

    /// Takes this process's owner lock on the file, once, and returns the
    /// identity recorded with the tasks it runs: from then on, until the
    /// process ends however it ends, other processes see those tasks as alive.
    /// An identity whose lock byte another live process holds (a hash
    /// collision) is replaced by a new one, so a lock is never shared.
    func holdOwnerLock(key: Key, filename: String) throws(StateStoreError) -> String {
        guard case .file = key else { return Identifiers.processOwner }
        let result = files.withLock { files -> Result<String, StateStoreError> in
            var file = files[key] ?? File(descriptor: -1, writable: false, held: [:])
            defer { files[key] = file }
            if let identity = file.ownerIdentity { return .success(identity) }
            if !file.writable {
                let descriptor = Self.openLockFile(filename, writable: true)
                if descriptor < 0 {
                    let code = errno
                    return .failure(.storage(path: filename, code: code, message: "cannot open the database file to hold the owner lock: \(String(cString: strerror(code)))"))
                }
                if file.descriptor >= 0 { file.retired.append(file.descriptor) }
                file.descriptor = descriptor
                file.writable = true
            }
            var identity = Identifiers.processOwner
            for _ in 0..<16 {
                var lock = Self.lock(F_WRLCK, at: Self.ownerOffset(of: identity))
                if fcntl(file.descriptor, Self.setLock, &lock) == 0 {
                    file.ownerIdentity = identity
                    return .success(identity)
                }
                let code = errno
                guard code == EAGAIN || code == EACCES else {
                    return .failure(.storage(path: filename, code: code, message: "cannot take the owner lock: \(String(cString: strerror(code)))"))
                }
                identity = Identifiers.processOwner + "-" + Identifiers.randomHex(bytes: 4)
            }
            return .failure(.storage(path: filename, code: EAGAIN, message: "cannot find a free owner lock"))
        }
        return try result.get()
    }

    /// Whether the process `owner` still runs: it is this one, or its owner lock is held.
    func isOwnerAlive(_ owner: String, key: Key, filename: String) -> Bool {
        guard case .file = key else { return true }
        return files.withLock { files in
            var file = files[key] ?? File(descriptor: -1, writable: false, held: [:])
            if owner == file.ownerIdentity { return true }
            if file.descriptor < 0 {
                file.descriptor = Self.openLockFile(filename, writable: false)
                if file.descriptor < 0 { return true }
                files[key] = file
            }
            var lock = Self.lock(F_WRLCK, at: Self.ownerOffset(of: owner))
            guard fcntl(file.descriptor, Self.getLock, &lock) == 0 else { return true }
            return lock.l_type != Int16(F_UNLCK)
        }
    }

    /// Tries to take the claim on `taskID` for `owner`, without waiting.
    func take(_ taskID: String, owner: String, key: Key, filename: String) throws(StateStoreError) -> Outcome {
        let offset = Self.offset(of: taskID)
        let result = files.withLock { files -> Result<Outcome, StateStoreError> in
            var file = files[key] ?? File(descriptor: -1, writable: false, held: [:])
            defer { files[key] = file }
            if case .file = key, !file.writable {
                let descriptor = Self.openLockFile(filename, writable: true)
                if descriptor < 0 {
                    let code = errno
                    if code == EACCES || code == EROFS || code == EPERM { return .failure(.readOnly(path: filename)) }
                    return .failure(.storage(path: filename, code: code, message: "cannot open the database file to lock a claim: \(String(cString: strerror(code)))"))
                }
                if file.descriptor >= 0 { file.retired.append(file.descriptor) }
                file.descriptor = descriptor
                file.writable = true
            }
            if let holder = file.held[offset] {
                // Another task with the same lock byte (a hash collision) counts as held elsewhere.
                return .success(holder.taskID == taskID ? .heldHere(owner: holder.owner) : .heldElsewhere)
            }
            if file.descriptor >= 0 {
                var lock = Self.lock(F_WRLCK, at: offset)
                if fcntl(file.descriptor, Self.setLock, &lock) != 0 {
                    let code = errno
                    if code == EAGAIN || code == EACCES { return .success(.heldElsewhere) }
                    return .failure(.storage(path: filename, code: code, message: "cannot lock a claim: \(String(cString: strerror(code)))"))
                }
            }
            file.held[offset] = (taskID, owner)
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
                var lock = Self.lock(F_UNLCK, at: offset)
                _ = fcntl(file.descriptor, Self.setLock, &lock)
            }
            if case .memory = key, file.held.isEmpty {
                files[key] = nil
            } else {
                files[key] = file
            }
        }
    }

    /// Which of `taskIDs` are claimed now, in this process or another. Opens
    /// the lock file read-only if no claim was taken here yet; a file that
    /// cannot be opened holds no claims.
    func held(among taskIDs: [String], key: Key, filename: String) -> Set<String> {
        guard !taskIDs.isEmpty else { return [] }
        return files.withLock { files in
            var file = files[key] ?? File(descriptor: -1, writable: false, held: [:])
            if case .file = key, file.descriptor < 0 {
                file.descriptor = Self.openLockFile(filename, writable: false)
                if file.descriptor >= 0 { files[key] = file }
            }
            var claimed = Set<String>()
            for taskID in taskIDs {
                let offset = Self.offset(of: taskID)
                if let holder = file.held[offset] {
                    if holder.taskID == taskID { claimed.insert(taskID) }
                    continue
                }
                guard file.descriptor >= 0 else { continue }
                var lock = Self.lock(F_WRLCK, at: offset)
                if fcntl(file.descriptor, Self.getLock, &lock) == 0 && lock.l_type != Int16(F_UNLCK) { claimed.insert(taskID) }
            }
            return claimed
        }
    }
}
