"""The rules of ThisThat, pure: money and odds arithmetic, bets, settlement, rewards, PnL.

Nothing here does I/O or imports from server/, storage/ or feeds/; time comes in as `now`.
"""
