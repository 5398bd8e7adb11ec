public enum KeywayCryptoModule {}
