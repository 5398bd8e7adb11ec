// Emulator
