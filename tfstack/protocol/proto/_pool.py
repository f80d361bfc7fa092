"""The private descriptor pool the gateway's generated messages register in.

TF Serving's own Python modules (`tensorflow_serving.apis`) register the same message names in
protobuf's default pool; a second registration there would clash. Keeping ours in a pool of their
own lets both be imported in one process (the wire-compatibility tests do exactly that). The pool is
pre-loaded with the well-known types our .proto files import.
"""

from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, wrappers_pb2

POOL = descriptor_pool.DescriptorPool()

for _module in (any_pb2, wrappers_pb2):
    POOL.Add(descriptor_pb2.FileDescriptorProto.FromString(_module.DESCRIPTOR.serialized_pb))
