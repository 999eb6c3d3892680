"""Host bridge: node records in (MQTT, serial), historian, Modbus TCP and OPC UA out."""

__version__ = "0.1.0"
