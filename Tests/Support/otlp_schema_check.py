"""Compare the descriptors of our proto/ files with those of the
`opentelemetry-proto` package: every message and enum we declare must exist
upstream with the same field names, numbers, types, labels, type names and
oneof membership. Prints one line per difference; exits 1 when any.

usage: otlp_schema_check.py DESCRIPTOR_SET
"""
import sys

from google.protobuf import descriptor_pb2, descriptor_pool

# Importing the generated modules registers their descriptors in the default pool.
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2  # noqa: F401
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2  # noqa: F401


def upstream_message(full_name):
    return descriptor_pool.Default().FindMessageTypeByName(full_name)


def upstream_enum(full_name):
    return descriptor_pool.Default().FindEnumTypeByName(full_name)


def compare_enum(ours, full_name, problems):
    try:
        theirs = upstream_enum(full_name)
    except KeyError:
        problems.append(f"{full_name}: enum not in opentelemetry-proto")
        return
    theirs_values = {v.name: v.number for v in theirs.values}
    for value in ours.value:
        if theirs_values.get(value.name) != value.number:
            problems.append(f"{full_name}.{value.name} = {value.number}: upstream has {theirs_values.get(value.name)}")


def compare_message(ours, full_name, problems, counts):
    try:
        theirs = upstream_message(full_name)
    except KeyError:
        problems.append(f"{full_name}: message not in opentelemetry-proto")
        return
    counts["messages"] += 1
    theirs_fields = {f.name: f for f in theirs.fields}
    for field in ours.field:
        counts["fields"] += 1
        where = f"{full_name}.{field.name}"
        up = theirs_fields.get(field.name)
        if up is None:
            problems.append(f"{where}: no such field upstream")
            continue
        if up.number != field.number:
            problems.append(f"{where}: number {field.number}, upstream {up.number}")
        if up.type != field.type:
            problems.append(f"{where}: type {field.type}, upstream {up.type}")
        repeated = field.label == descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
        if repeated != up.is_repeated:
            problems.append(f"{where}: repeated={repeated} differs from upstream")
        if field.type_name and field.type_name.lstrip(".") != (
            (up.message_type or up.enum_type).full_name
        ):
            problems.append(f"{where}: type name {field.type_name} differs from upstream")
        ours_oneof = ours.oneof_decl[field.oneof_index].name if field.HasField("oneof_index") else None
        theirs_oneof = up.containing_oneof.name if up.containing_oneof else None
        if ours_oneof != theirs_oneof:
            problems.append(f"{where}: oneof {ours_oneof}, upstream {theirs_oneof}")
    for nested in ours.nested_type:
        compare_message(nested, f"{full_name}.{nested.name}", problems, counts)
    for enum in ours.enum_type:
        compare_enum(enum, f"{full_name}.{enum.name}", problems)


def main():
    data = open(sys.argv[1], "rb").read()
    file_set = descriptor_pb2.FileDescriptorSet.FromString(data)
    problems, counts = [], {"messages": 0, "fields": 0}
    for proto_file in file_set.file:
        for message in proto_file.message_type:
            compare_message(message, f"{proto_file.package}.{message.name}", problems, counts)
        for enum in proto_file.enum_type:
            compare_enum(enum, f"{proto_file.package}.{enum.name}", problems)
    for problem in problems:
        print(problem)
    print(f"checked {counts['messages']} messages, {counts['fields']} fields, {len(problems)} differences")
    sys.exit(1 if problems or counts["fields"] == 0 else 0)


if __name__ == "__main__":
    main()
