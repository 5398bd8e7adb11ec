import Foundation
import Hummingbird
import Logging
import NIOCore

/// Runs the control API for an emulator until cancelled (SIGINT/SIGTERM handled by the caller).
public enum ControlServer {
    public static func run(_ emu: Emulator, onReady: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        var logger = Logger(label: "keyway.api")
        logger.logLevel = .warning
        let app = Application(
            router: try ControlAPI.router(emu),
            configuration: .init(address: .hostname(emu.options.listenHost, port: emu.options.listenPort), serverName: "keyway"),
            onServerRunning: { channel in await onReady(channel.localAddress?.port ?? emu.options.listenPort) },
            logger: logger)
        try await app.run()
    }
}
