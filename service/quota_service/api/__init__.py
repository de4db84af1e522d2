"""gRPC surface: proto <-> domain translation and error mapping only."""
