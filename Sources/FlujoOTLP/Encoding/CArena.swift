import Foundation

/// Owns every C allocation of one protobuf-c message tree and frees them together.
///
/// protobuf-c messages are plain structs joined by raw pointers; building a tree
/// in an arena and packing it before the arena dies keeps every pointer valid
/// for exactly as long as it is read. Memory comes from 64 KiB blocks handed out
/// by bumping an offset, so a span costs no `malloc` of its own.
final class CArena {
    private static let blockSize = 64 * 1024
    private var blocks: [UnsafeMutableRawPointer] = []
    private var current: UnsafeMutableRawPointer?
    private var used = 0
    private var capacity = 0

    init() {}

    deinit {
        for block in blocks { free(block) }
    }

    /// Zeroed, 16-byte aligned storage for `count` values of `T`.
    func allocate<T>(_ type: T.Type, count: Int = 1) -> UnsafeMutablePointer<T> {
        let size = max(count, 1) * MemoryLayout<T>.stride
        let aligned = (used + 15) & ~15
        if current == nil || aligned + size > capacity {
            let blockSize = max(Self.blockSize, size)
            let block = calloc(1, blockSize)!
            blocks.append(block)
            current = block
            capacity = blockSize
            used = size
            return block.bindMemory(to: T.self, capacity: max(count, 1))
        }
        let pointer = current! + aligned
        used = aligned + size
        // Blocks come zeroed from calloc and are never reused, so the bytes are zero.
        return pointer.bindMemory(to: T.self, capacity: max(count, 1))
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
