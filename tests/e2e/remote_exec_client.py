"""A stand-in REAPI client for the worker's tests, until `--executor remote` exists: uploads one
Action (`sh -c RUN` over an input file, in the given image) and calls Execute; prints the outcome
as one JSON line. Usage: remote_exec_client.py PORT IMAGE_REF IMAGE_ID RUN OUTPUT [SALT]"""

import hashlib
import json
import sys

import grpc
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as re
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2_grpc as re_grpc


def digest(data):
    return re.Digest(hash=hashlib.sha256(data).hexdigest(), size_bytes=len(data))


def main():
    port, image, image_id, run, output = sys.argv[1:6]
    salt = sys.argv[6].encode() if len(sys.argv) > 6 else b""
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    cas = re_grpc.ContentAddressableStorageStub(channel)
    data = b"input data\n"
    sub = re.Directory(files=[re.FileNode(name="data", digest=digest(data))])
    sub_bytes = sub.SerializeToString()
    root = re.Directory(directories=[re.DirectoryNode(name="in", digest=digest(sub_bytes))])
    root_bytes = root.SerializeToString()
    platform = re.Platform(properties=[
        re.Platform.Property(name="OSFamily", value="linux"),
        re.Platform.Property(name="container-image", value=f"{image}@{image_id}"),
        re.Platform.Property(name="network", value="none"),
    ])
    command = re.Command(arguments=["sh", "-c", run], output_paths=[output], platform=platform)
    command_bytes = command.SerializeToString()
    action = re.Action(command_digest=digest(command_bytes), input_root_digest=digest(root_bytes),
                       platform=platform, salt=salt)
    action_bytes = action.SerializeToString()
    blobs = [data, sub_bytes, root_bytes, command_bytes, action_bytes]
    cas.BatchUpdateBlobs(re.BatchUpdateBlobsRequest(requests=[
        re.BatchUpdateBlobsRequest.Request(digest=digest(b), data=b) for b in blobs]))
    execution = re_grpc.ExecutionStub(channel)
    last = None
    for op in execution.Execute(re.ExecuteRequest(action_digest=digest(action_bytes),
                                                  skip_cache_lookup=True), timeout=90):
        last = op
    response = re.ExecuteResponse()
    last.response.Unpack(response)
    result = response.result
    wanted = [f.digest for f in result.output_files]
    if result.HasField("stdout_digest"):
        wanted.append(result.stdout_digest)
    got = cas.BatchReadBlobs(re.BatchReadBlobsRequest(digests=wanted)).responses
    content = {r.digest.hash: r.data.decode(errors="replace") for r in got}
    print(json.dumps({
        "status_code": response.status.code,
        "status_message": response.status.message,
        "exit_code": result.exit_code,
        "outputs": {f.path: content.get(f.digest.hash) for f in result.output_files},
        "stdout": content.get(result.stdout_digest.hash, ""),
        "worker": result.execution_metadata.worker,
    }))


main()
