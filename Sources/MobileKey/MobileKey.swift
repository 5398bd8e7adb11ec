// MobileKey
