"""A real S3 protocol server for the tests (moto's server mode), on 127.0.0.1 only."""

from __future__ import annotations


class S3Server:
    """A real S3 protocol server (moto's server mode) on 127.0.0.1; stop/start keep its data."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.port = port
        self.endpoint_url = f"http://{host}:{port}"

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1")

    def stop(self) -> None:
        self._server.stop()

    def restart(self) -> None:
        """Start again on the same port (moto's in-memory backend keeps the buckets)."""
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port)
        self._server.start()
