// The BLE module: the radio path of a Keyway lock, byte-exact.
//
// Layers, bottom up (docs/PROTOCOL.md, "GATT, ATT, L2CAP framing", has the wire details):
//   ATTBearer            — one ATT channel (L2CAP CID 0x0004 or an equivalent); transports implement it:
//                          LoopbackLink (in-process), SocketBearer (Unix/TCP stream with L2CAP basic
//                          frames, or any SOCK_SEQPACKET fd with bare ATT PDUs), decorators
//                          ConditionedBearer (delay/loss) and CapturingBearer (btsnoop).
//   ATT PDUs             — value types with pure encode/decode (ATTPDU and one struct per PDU).
//   GATTDatabase         — services/characteristics/descriptors laid out on handles.
//   GATTServer/Client    — one per connection, on a bearer.
//   KeywayLockService    — the lock's GATT service; GAPService/GATTProfileService.
//   BTSnoopWriter/Reader — H4 btsnoop captures Wireshark opens.
//
// This module imports nothing else of Keyway's (DESIGN.md layering).

/// Protocol-wide constants of the Attribute Protocol (Core spec Vol 3 Part F).
public enum ATT {
    /// ATT_MTU every LE connection starts with (Vol 3 Part F 3.2.8).
    public static let defaultMTU = 23
    /// Largest ATT_MTU a Keyway peer negotiates (the largest value iOS and Android use).
    public static let maximumMTU = 517
    /// No attribute value may be longer (Vol 3 Part F 3.2.9).
    public static let maximumAttributeValueLength = 512
    /// L2CAP fixed channel of ATT on an LE-U logical link.
    public static let fixedChannelID: UInt16 = 0x0004
}
