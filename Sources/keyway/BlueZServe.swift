import Emulator
import Foundation

/// The radio side of `serve --transport bluez`.
struct BlueZPeripheralHandle {
    let summary: String
    let stopBody: () -> Void
    func stop() { stopBody() }
}

func startBlueZIfRequested(_ emu: Emulator) async throws -> BlueZPeripheralHandle? {
    guard emu.options.transport == .bluez else { return nil }
    throw UserFacingError("the BlueZ transport is not wired into serve yet")
}
