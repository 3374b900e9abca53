// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Committee} from "./Committee.sol";
import {Eip712, MerkleProofs} from "./Crypto.sol";
import {IERC20, SafeTransfer} from "./IERC20.sol";

/// @title Settlement
/// @notice Tenant escrow, the epoch roots the committee signs, and reward claims, in one
/// contract because they share one balance sheet. Every token the contract holds is in
/// exactly one of three places, and the contract keeps their sum equal to what it holds:
///
/// - `escrowOf[tenant]`: what a tenant deposited and has not been charged or withdrawn;
/// - `treasury`: charged tenant payments plus emission funding, not yet given to an epoch;
/// - `potOf[epoch]`: what a posted epoch's claims may still take.
///
/// Posting an epoch (`postRoot`, with a committee quorum over an EIP-712 `EpochRoot`):
/// 1. debits each listed tenant's escrow by its charge (capped at the escrow, the shortfall
///    reported in an event) into the treasury;
/// 2. moves the root's `total` from the treasury into the epoch's pot, and reverts if the
///    treasury holds less, so the claims of an epoch can never exceed what backs them.
///
/// Tenants are named by their ed25519 public key (`bytes32`), as in the ledger. Anyone may
/// deposit for a tenant; the first depositor becomes the key's withdrawer. Withdrawals wait
/// `withdrawalDelay` after their request, which must exceed an epoch plus its posting
/// window, so a tenant cannot empty its escrow between using the network and being charged.
contract Settlement is Eip712 {
    using SafeTransfer for IERC20;

    bytes32 public constant CHARGE_TYPEHASH = keccak256("Charge(bytes32 tenant,uint256 amount)");
    bytes32 public constant EPOCH_ROOT_TYPEHASH = keccak256(
        "EpochRoot(uint64 epoch,bytes32 rewardsRoot,uint256 total,Charge[] charges,uint256 deadline)"
        "Charge(bytes32 tenant,uint256 amount)"
    );

    /// One tenant's charge for an epoch, from the ledger's tenant charges.
    struct Charge {
        bytes32 tenant;
        uint256 amount;
    }

    struct Withdrawal {
        uint256 amount;
        uint256 readyAt;
    }

    IERC20 public immutable token;
    Committee public immutable committee;
    uint256 public immutable withdrawalDelay;

    uint256 public treasury;
    mapping(bytes32 => uint256) public escrowOf;
    mapping(bytes32 => address) public withdrawerOf;
    mapping(bytes32 => Withdrawal) public pendingWithdrawal;

    /// The last posted epoch; epochs are posted in strictly increasing order.
    uint64 public lastEpoch;
    bool public anyPosted;
    mapping(uint64 => bytes32) public rootOf;
    mapping(uint64 => uint256) public potOf;
    /// Claimed flags, one bit per epoch in words of 256 epochs per account: an operator
    /// that claims every epoch sets a bit in a word that is already non-zero, which costs
    /// 2,900 gas instead of the 20,000 of a fresh storage slot.
    mapping(address => mapping(uint256 => uint256)) private claimedWords;

    event Deposited(bytes32 indexed tenant, address indexed from, uint256 amount);
    event WithdrawalRequested(bytes32 indexed tenant, uint256 amount, uint256 readyAt);
    event Withdrawn(bytes32 indexed tenant, address indexed to, uint256 amount);
    event TreasuryFunded(address indexed from, uint256 amount);
    event Charged(uint64 indexed epoch, bytes32 indexed tenant, uint256 amount, uint256 shortfall);
    event RootPosted(uint64 indexed epoch, bytes32 root, uint256 total);
    event Claimed(uint64 indexed epoch, address indexed account, uint256 amount);

    error Expired();
    error EpochNotAfterLast(uint64 epoch, uint64 last);
    error ZeroRoot();
    error TreasuryTooSmall(uint256 treasury, uint256 total);
    error AlreadyClaimed();
    error BadProof();
    error PotExhausted();
    error NotWithdrawer();
    error NothingToWithdraw();
    error TooEarly(uint256 readyAt);
    error EscrowTooSmall();

    constructor(IERC20 token_, Committee committee_, uint256 withdrawalDelay_)
        Eip712("Xnode Settlement", "1")
    {
        token = token_;
        committee = committee_;
        withdrawalDelay = withdrawalDelay_;
    }

    // ---- escrow ----------------------------------------------------------------------

    /// Adds `amount` (pulled from the caller, who approved it) to `tenant`'s escrow.
    function deposit(bytes32 tenant, uint256 amount) external {
        if (withdrawerOf[tenant] == address(0)) withdrawerOf[tenant] = msg.sender;
        escrowOf[tenant] += amount;
        token.take(msg.sender, address(this), amount);
        emit Deposited(tenant, msg.sender, amount);
    }

    /// Starts the withdrawal delay for `amount` (replacing any earlier request).
    function requestWithdrawal(bytes32 tenant, uint256 amount) external {
        if (msg.sender != withdrawerOf[tenant]) revert NotWithdrawer();
        uint256 readyAt = block.timestamp + withdrawalDelay;
        pendingWithdrawal[tenant] = Withdrawal(amount, readyAt);
        emit WithdrawalRequested(tenant, amount, readyAt);
    }

    /// Pays out the requested withdrawal once its delay passed, capped at the escrow left
    /// after the charges posted meanwhile.
    function withdraw(bytes32 tenant) external {
        if (msg.sender != withdrawerOf[tenant]) revert NotWithdrawer();
        Withdrawal memory request = pendingWithdrawal[tenant];
        if (request.amount == 0) revert NothingToWithdraw();
        if (block.timestamp < request.readyAt) revert TooEarly(request.readyAt);
        uint256 balance = escrowOf[tenant];
        uint256 amount = request.amount < balance ? request.amount : balance;
        delete pendingWithdrawal[tenant];
        escrowOf[tenant] = balance - amount;
        token.pay(msg.sender, amount);
        emit Withdrawn(tenant, msg.sender, amount);
    }

    /// Adds emission funding to the treasury (pulled from the caller).
    function fundTreasury(uint256 amount) external {
        treasury += amount;
        token.take(msg.sender, address(this), amount);
        emit TreasuryFunded(msg.sender, amount);
    }

    // ---- epochs ----------------------------------------------------------------------

    /// The EIP-712 digest the committee signs for an epoch.
    function epochRootDigest(
        uint64 epoch,
        bytes32 rewardsRoot,
        uint256 total,
        Charge[] calldata charges,
        uint256 deadline
    ) public view returns (bytes32) {
        bytes32[] memory chargeHashes = new bytes32[](charges.length);
        for (uint256 i = 0; i < charges.length; ++i) {
            chargeHashes[i] =
                keccak256(abi.encode(CHARGE_TYPEHASH, charges[i].tenant, charges[i].amount));
        }
        return _digest(
            keccak256(
                abi.encode(
                    EPOCH_ROOT_TYPEHASH,
                    epoch,
                    rewardsRoot,
                    total,
                    keccak256(abi.encodePacked(chargeHashes)),
                    deadline
                )
            )
        );
    }

    /// Accepts an epoch's reward root with a committee quorum, charges the tenants, and
    /// funds the epoch's pot with `total`.
    function postRoot(
        uint64 epoch,
        bytes32 rewardsRoot,
        uint256 total,
        Charge[] calldata charges,
        uint256 deadline,
        bytes[] calldata signatures
    ) external {
        if (block.timestamp > deadline) revert Expired();
        if (anyPosted && epoch <= lastEpoch) revert EpochNotAfterLast(epoch, lastEpoch);
        // The all-zero root is the ledger's empty table; no proof can reach it, so a pot
        // behind it could never be claimed.
        if (rewardsRoot == bytes32(0) && total != 0) revert ZeroRoot();
        committee.checkQuorum(
            epochRootDigest(epoch, rewardsRoot, total, charges, deadline), signatures
        );
        anyPosted = true;
        lastEpoch = epoch;

        uint256 funds = treasury;
        for (uint256 i = 0; i < charges.length; ++i) {
            bytes32 tenant = charges[i].tenant;
            uint256 balance = escrowOf[tenant];
            uint256 taken = charges[i].amount < balance ? charges[i].amount : balance;
            escrowOf[tenant] = balance - taken;
            funds += taken;
            emit Charged(epoch, tenant, taken, charges[i].amount - taken);
        }
        if (funds < total) revert TreasuryTooSmall(funds, total);
        treasury = funds - total;
        rootOf[epoch] = rewardsRoot;
        potOf[epoch] = total;
        emit RootPosted(epoch, rewardsRoot, total);
    }

    // ---- claims ----------------------------------------------------------------------

    /// Whether `account` claimed its reward of `epoch`.
    function claimed(uint64 epoch, address account) external view returns (bool) {
        return claimedWords[account][epoch >> 8] & (uint256(1) << (epoch & 0xff)) != 0;
    }

    /// Pays `account` its `amount` for `epoch` if the leaf
    /// `keccak256(keccak256(abi.encode(epoch, account, amount)))` is under the epoch's root
    /// (the ledger's `leaf_hash`). Anyone may submit it; the tokens go to `account`.
    function claim(uint64 epoch, address account, uint256 amount, bytes32[] calldata proof)
        external
    {
        uint256 word = claimedWords[account][epoch >> 8];
        uint256 bit = uint256(1) << (epoch & 0xff);
        if (word & bit != 0) revert AlreadyClaimed();
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(epoch, account, amount))));
        if (!MerkleProofs.verify(proof, rootOf[epoch], leaf)) revert BadProof();
        uint256 pot = potOf[epoch];
        // Unreachable while the committee signs totals that match its tables; kept so a
        // wrong total can never pay one epoch's claims from another's pot.
        if (pot < amount) revert PotExhausted();
        potOf[epoch] = pot - amount;
        claimedWords[account][epoch >> 8] = word | bit;
        token.pay(account, amount);
        emit Claimed(epoch, account, amount);
    }
}
