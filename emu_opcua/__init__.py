"""emu-opcua: an OPC UA server for EMU Professional II TCP/IP electricity meters.

Layout (the folders are the architecture):

- ``emu_opcua.meter``     sans-IO core: the value catalogue, units, and pure parsers /
                          encoders for status.json, meterdata.json, the datalog and
                          logbook CSV and Modbus register blocks. No I/O imports.
- ``emu_opcua.clients``   thin async adapters: httpx (HTTP API) and pymodbus (Modbus TCP).
- ``emu_opcua.simulator`` a meter emulator speaking all the meter's protocols.
- ``emu_opcua.opcua``     the one OPC UA mapping layer (asyncua).
- ``emu_opcua.errors``    every error the project raises.
"""

__version__ = "0.1.0"
