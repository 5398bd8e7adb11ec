// The two services every GATT server carries (Core spec Vol 3 Part C 12 and Part G 7).

/// The GAP service (0x1800): Device Name (0x2A00) and Appearance (0x2A01), both read-only.
public enum GAPService {
    /// Appearance "Access Lock" (category Access Control 0x01C, sub-category 0x04; Assigned Numbers 2.6).
    public static let accessLockAppearance: UInt16 = 0x0704
    /// Appearance "Generic Access Control".
    public static let genericAccessControlAppearance: UInt16 = 0x0700

    /// - Parameters:
    ///   - deviceName: UTF-8, truncated at a character boundary to 248 bytes (the GAP limit).
    ///   - appearance: 16-bit appearance value, little-endian on the wire.
    public static func make(deviceName: String, appearance: UInt16 = accessLockAppearance) -> GATTService {
        var name = Array(deviceName.utf8)
        if name.count > 248 {
            var cut = 248
            while cut > 0 && name[cut] & 0xC0 == 0x80 { cut -= 1 }  // keep whole UTF-8 sequences
            name = Array(name[..<cut])
        }
        return GATTService(uuid: .genericAccessService, characteristics: [
            GATTCharacteristic(uuid: .deviceName, properties: [.read], value: .constant(name)),
            GATTCharacteristic(uuid: .appearance, properties: [.read],
                               value: .constant([UInt8(appearance & 0xFF), UInt8(appearance >> 8)])),
        ])
    }
}

/// The GATT service (0x1801) with Service Changed (0x2A05, indicate). Keyway databases never change
/// while connected, so the server never indicates it; the characteristic is there because clients
/// (iOS, Android, BlueZ) look for it to decide whether they may cache the database.
public enum GATTProfileService {
    public static func make() -> GATTService {
        GATTService(uuid: .genericAttributeService, characteristics: [
            // Value: the affected handle range (start, end), here the whole space. Not readable
            // (indicate only), per the spec.
            GATTCharacteristic(uuid: .serviceChanged, properties: [.indicate], value: .constant([0x01, 0x00, 0xFF, 0xFF])),
        ])
    }
}
