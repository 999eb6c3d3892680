"""Outputs: tag servers that read the TagStore (Modbus TCP, OPC UA); they never touch inputs."""
