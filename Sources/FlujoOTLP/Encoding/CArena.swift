import Foundation

/// Owns every C allocation of one protobuf-c message tree and frees them together.
///
/// protobuf-c messages are plain structs joined by raw pointers; building a tree
/// in an arena and packing it before the arena dies keeps every pointer valid
/// for exactly as long as it is read.
final class CArena {
    private var blocks: [UnsafeMutableRawPointer] = []

    init() {
        blocks.reserveCapacity(256)
    }

    deinit {
        for block in blocks { free(block) }
    }

    /// Zeroed storage for `count` values of `T`.
    func allocate<T>(_ type: T.Type, count: Int = 1) -> UnsafeMutablePointer<T> {
        let raw = calloc(max(count, 1), MemoryLayout<T>.stride)!
        blocks.append(raw)
        return raw.bindMemory(to: T.self, capacity: max(count, 1))
    }

    /// A NUL-terminated copy of `text`.
    func string(_ text: String) -> UnsafeMutablePointer<CChar> {
        var copy = text
        return copy.withUTF8 { utf8 in
            let pointer = allocate(CChar.self, count: utf8.count + 1)
            if let base = utf8.baseAddress {
                UnsafeMutableRawPointer(pointer).copyMemory(from: base, byteCount: utf8.count)
            }
            pointer[utf8.count] = 0
            return pointer
        }
    }

    /// A copy of `bytes` for a `bytes` field; nil data for an empty field.
    func bytes(_ bytes: [UInt8]) -> (count: Int, pointer: UnsafeMutablePointer<UInt8>?) {
        guard !bytes.isEmpty else { return (0, nil) }
        let pointer = allocate(UInt8.self, count: bytes.count)
        pointer.update(from: bytes, count: bytes.count)
        return (bytes.count, pointer)
    }
}
