import CSQLite

/// Network file systems, where a SQLite file must not be shared. SQLite's
/// write-ahead log keeps its index in memory shared between the processes
/// of one host (`-shm`), and Flujo's owner locks are byte-range locks that a
/// network file system may not keep across machines: processes on several
/// hosts writing one file there can corrupt it, or see a live task's owner
/// as gone. Several machines share state through PostgreSQL instead.
public enum NetworkFileSystem {
    /// The name of the network file system that holds `path` (the file, or
    /// its folder when the file does not exist yet), or nil for a local one
    /// or when it cannot be told.
    public static func name(holding path: String) -> String? {
        guard path != ":memory:", !path.isEmpty else { return nil }
        #if os(Linux)
        var magic = flujo_file_system_magic(path)
        if magic == 0 {
            let slash = path.lastIndex(of: "/")
            let folder = slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
            magic = flujo_file_system_magic(folder)
        }
        return magic == 0 ? nil : name(magic: UInt64(magic))
        #else
        return nil
        #endif
    }

    /// The network file system a Linux `statfs` magic number stands for, or nil.
    public static func name(magic: UInt64) -> String? {
        switch magic {
        case 0x6969: "nfs"
        case 0x517B: "smb"
        case 0xFF53_4D42: "cifs"
        case 0xFE53_4D42: "smb2"
        case 0x0102_1997: "9p"
        case 0x5346_414F: "afs"
        case 0x7375_7245: "coda"
        case 0x00C3_6400: "ceph"
        case 0x0BD0_0BD0: "lustre"
        case 0x0116_1970: "gfs2"
        case 0x7461_636F: "ocfs2"
        case 0x4750_4653: "gpfs"
        default: nil
        }
    }

    /// What to tell an operator whose database is on a network file system.
    static func warning(path: String, fileSystem: String) -> String {
        "state database \(path) is on a network file system (\(fileSystem)): SQLite and Flujo's task owner locks are safe there only "
            + "while every process using the file runs on one host. Processes on several machines must share state through "
            + "PostgreSQL ([state] uri = \"postgres://...\"), or keep one SQLite file per host on a local disk."
    }
}
