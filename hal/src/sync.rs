//! Locks that are safe to take from interrupt handlers.
//!
//! [`IrqMutex`] disables interrupts on the local CPU while held, so an interrupt handler on
//! the same CPU can never spin on a lock its own CPU holds.

use core::ops::{Deref, DerefMut};

use x86_64::instructions::interrupts;

/// A spinlock that keeps interrupts disabled on the holding CPU.
pub struct IrqMutex<T> {
    inner: spin::Mutex<T>,
}

/// Access to the data of a locked [`IrqMutex`]; restores the interrupt flag when dropped.
pub struct IrqMutexGuard<'a, T> {
    guard: Option<spin::MutexGuard<'a, T>>,
    were_enabled: bool,
}

impl<T> IrqMutex<T> {
    /// A new unlocked mutex.
    pub const fn new(value: T) -> Self {
        Self {
            inner: spin::Mutex::new(value),
        }
    }

    /// Disables interrupts, then spins until the lock is free. While it spins it answers TLB
    /// shootdowns itself: the holder may be waiting for this CPU to flush (an address space
    /// lock is held across the flush of what it unmapped), and with interrupts off the
    /// shootdown IPI cannot get through.
    pub fn lock(&self) -> IrqMutexGuard<'_, T> {
        let were_enabled = interrupts::are_enabled();
        interrupts::disable();
        let guard = loop {
            if let Some(guard) = self.inner.try_lock() {
                break guard;
            }
            crate::apic::serve_shootdown();
            core::hint::spin_loop();
        };
        IrqMutexGuard {
            guard: Some(guard),
            were_enabled,
        }
    }

    /// Takes the lock if it is free right now.
    pub fn try_lock(&self) -> Option<IrqMutexGuard<'_, T>> {
        let were_enabled = interrupts::are_enabled();
        interrupts::disable();
        match self.inner.try_lock() {
            Some(guard) => Some(IrqMutexGuard {
                guard: Some(guard),
                were_enabled,
            }),
            None => {
                if were_enabled {
                    interrupts::enable();
                }
                None
            }
        }
    }
}

impl<T> Deref for IrqMutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.guard
            .as_ref()
            .expect("the guard is only taken in drop")
    }
}

impl<T> DerefMut for IrqMutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.guard
            .as_mut()
            .expect("the guard is only taken in drop")
    }
}

impl<T> Drop for IrqMutexGuard<'_, T> {
    fn drop(&mut self) {
        // Unlock first, then restore interrupts: never take an interrupt while holding it.
        drop(self.guard.take());
        if self.were_enabled {
            interrupts::enable();
        }
    }
}
