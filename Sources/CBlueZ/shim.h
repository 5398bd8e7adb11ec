#ifndef KEYWAY_CBLUEZ_SHIM_H
#define KEYWAY_CBLUEZ_SHIM_H
#include <sys/socket.h>
#include <bluetooth/bluetooth.h>
#include <bluetooth/hci.h>
#include <bluetooth/hci_lib.h>
#include <bluetooth/l2cap.h>
/* Not in Swift's Glibc module: the BLE module's socket event loop (SocketEventLoop.swift). */
#include <sys/epoll.h>
#include <sys/eventfd.h>
#endif
