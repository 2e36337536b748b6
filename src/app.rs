//! Process-wide state handed to every task: config snapshot, pools, shutdown.
