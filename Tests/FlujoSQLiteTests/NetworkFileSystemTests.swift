import Flujo
import FlujoSQLite
import FlujoTestSupport
import Foundation
import Testing

@Suite("Network file systems")
struct NetworkFileSystemTests {
    @Test("the statfs magic numbers of network file systems are named; local ones (ext4, tmpfs, xfs, btrfs, overlay) are not")
    func magicNumbers() {
        #expect(NetworkFileSystem.name(magic: 0x6969) == "nfs")
        #expect(NetworkFileSystem.name(magic: 0xFF53_4D42) == "cifs")
        #expect(NetworkFileSystem.name(magic: 0xFE53_4D42) == "smb2")
        #expect(NetworkFileSystem.name(magic: 0x0102_1997) == "9p")
        #expect(NetworkFileSystem.name(magic: 0x00C3_6400) == "ceph")
        for local: UInt64 in [0xEF53, 0x0102_1994, 0x5846_5342, 0x9123_683E, 0x794C_7630] {
            #expect(NetworkFileSystem.name(magic: local) == nil, "\(String(local, radix: 16)) is local")
        }
    }

    @Test("a file on this machine's local disks is not on a network file system, whether it exists yet or not; the check says so")
    func localFiles() throws {
        let folder = TestSupport.temporaryDirectory("flujo-fs")
        let path = folder.appendingPathComponent("state.db").path
        #expect(NetworkFileSystem.name(holding: path) == nil, "a file not created yet: its folder is asked")
        let store = try SQLiteStateStore(path: path)
        store.close()
        #expect(NetworkFileSystem.name(holding: path) == nil)
        #expect(NetworkFileSystem.name(holding: ":memory:") == nil)
        var report = try SQLiteStateStore.check(path: path)
        #expect(report.networkFileSystem == nil)
        #expect(report.isHealthy && report.advice.isEmpty)
        // On a network file system, the check stays healthy (one host may use it) and says what to do.
        report.networkFileSystem = "nfs"
        #expect(report.isHealthy)
        let advice = try #require(report.advice.first)
        #expect(advice.contains("is on a network file system (nfs)") && advice.contains("one host") && advice.contains("PostgreSQL"), "\(advice)")
    }
}
