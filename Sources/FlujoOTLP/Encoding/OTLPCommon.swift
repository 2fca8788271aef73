import COTLP
import CProtobufC

/// The parts every OTLP request shares (resource, scope, attributes, bytes),
/// built into a protobuf-c message tree in an arena.
enum OTLPCommon {
    /// The origin's resource.
    static func resource(_ origin: OTLPOrigin, _ arena: CArena) -> UnsafeMutablePointer<Opentelemetry__Proto__Resource__V1__Resource> {
        let resource = arena.allocate(Opentelemetry__Proto__Resource__V1__Resource.self)
        opentelemetry__proto__resource__v1__resource__init(resource)
        (resource.pointee.n_attributes, resource.pointee.attributes) = keyValues(origin.resourceAttributes, arena)
        return resource
    }

    /// The origin's instrumentation scope.
    static func scope(_ origin: OTLPOrigin, _ arena: CArena) -> UnsafeMutablePointer<Opentelemetry__Proto__Common__V1__InstrumentationScope> {
        let scope = arena.allocate(Opentelemetry__Proto__Common__V1__InstrumentationScope.self)
        opentelemetry__proto__common__v1__instrumentation_scope__init(scope)
        scope.pointee.name = arena.string(origin.scopeName)
        scope.pointee.version = arena.string(origin.scopeVersion)
        return scope
    }

    static func binary(_ bytes: [UInt8], _ arena: CArena) -> ProtobufCBinaryData {
        let copy = arena.bytes(bytes)
        return ProtobufCBinaryData(len: copy.count, data: copy.pointer)
    }

    static func keyValues(
        _ attributes: [OTLPAttribute], _ arena: CArena
    ) -> (Int, UnsafeMutablePointer<UnsafeMutablePointer<Opentelemetry__Proto__Common__V1__KeyValue>?>?) {
        guard !attributes.isEmpty else { return (0, nil) }
        let list = arena.allocate(UnsafeMutablePointer<Opentelemetry__Proto__Common__V1__KeyValue>?.self, count: attributes.count)
        for (index, attribute) in attributes.enumerated() {
            let pair = arena.allocate(Opentelemetry__Proto__Common__V1__KeyValue.self)
            opentelemetry__proto__common__v1__key_value__init(pair)
            pair.pointee.key = arena.string(attribute.key)
            pair.pointee.value = anyValue(attribute.value, arena)
            list[index] = pair
        }
        return (attributes.count, list)
    }

    private static func anyValue(_ value: OTLPValue, _ arena: CArena) -> UnsafeMutablePointer<Opentelemetry__Proto__Common__V1__AnyValue> {
        let out = arena.allocate(Opentelemetry__Proto__Common__V1__AnyValue.self)
        opentelemetry__proto__common__v1__any_value__init(out)
        switch value {
        case let .string(text):
            out.pointee.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE
            out.pointee.string_value = arena.string(text)
        case let .bool(flag):
            out.pointee.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE
            out.pointee.bool_value = flag ? 1 : 0
        case let .int(number):
            out.pointee.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE
            out.pointee.int_value = number
        case let .double(number):
            out.pointee.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE
            out.pointee.double_value = number
        case let .bytes(bytes):
            out.pointee.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BYTES_VALUE
            out.pointee.bytes_value = binary(bytes, arena)
        case let .array(values):
            out.pointee.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE
            let array = arena.allocate(Opentelemetry__Proto__Common__V1__ArrayValue.self)
            opentelemetry__proto__common__v1__array_value__init(array)
            let list = arena.allocate(UnsafeMutablePointer<Opentelemetry__Proto__Common__V1__AnyValue>?.self, count: values.count)
            for (index, item) in values.enumerated() { list[index] = anyValue(item, arena) }
            array.pointee.n_values = values.count
            array.pointee.values = values.isEmpty ? nil : list
            out.pointee.array_value = array
        case let .keyValues(pairs):
            out.pointee.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_KVLIST_VALUE
            let kvlist = arena.allocate(Opentelemetry__Proto__Common__V1__KeyValueList.self)
            opentelemetry__proto__common__v1__key_value_list__init(kvlist)
            (kvlist.pointee.n_values, kvlist.pointee.values) = keyValues(pairs, arena)
            out.pointee.kvlist_value = kvlist
        }
        return out
    }
}
